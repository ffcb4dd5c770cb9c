import ArgumentParser
import Foundation
import Kernel
import Logging
import MeltyBackup
import MeltyEmbedded

/// `meltybase backup create|list|verify|restore`: base backups and point-in-time restore
/// of the embedded Postgres (see docs/backups.md).
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "Base backups, the WAL archive and point-in-time restore of the embedded Postgres.",
        discussion: """
            The embedded cluster archives its WAL continuously into the backup folder ([backup] \
            directory, default <data dir>/backups) and the kernel takes a base backup every \
            [backup] base_backup_interval_hours. With [database] url MeltyBase runs no backups: \
            use pgBackRest or WAL-G on that server (docs/backups.md).
            """,
        subcommands: [Create.self, List.self, Verify.self, Restore.self])

    /// The configuration, the embedded cluster's paths (nothing started) and the store.
    struct Context {
        let config: KernelConfig
        let postgres: EmbeddedPostgres
        let store: BackupStore
        let runner: ToolRunner

        init(_ options: ConfigOptions) throws {
            config = try options.load()
            guard config.usesEmbeddedPostgres else {
                throw CommandError(
                    "[database] url is set: MeltyBase backs up only the Postgres it runs itself. Back up that server with pgBackRest or WAL-G (see docs/backups.md)"
                )
            }
            var logger = Logger(label: "meltybase")
            logger.logLevel = .warning
            do {
                postgres = try config.embeddedPostgres(logger: logger)
            } catch let error as EmbeddedServiceError {
                throw CommandError(error.description)
            }
            store = BackupStore(root: postgres.backupDirectory)
            runner = ToolRunner(postgres: postgres)
        }

        /// Writes `entry` into the audit log when the kernel's database is up, else queues it
        /// for the next kernel start; what happened, for the output.
        func audit(_ entry: PendingAudit.Entry, databaseUp: Bool) async -> String {
            if databaseUp {
                do {
                    try await KernelBackups.audit(entry, conninfo: postgres.conninfo)
                    return "audited as \(entry.action)"
                } catch {}
            }
            do {
                try PendingAudit(root: store.root).add(entry)
                return "audit entry \(entry.action) queued in \(PendingAudit(root: store.root).path); the next kernel start writes it"
            } catch {
                return "warning: the audit entry \(entry.action) could not be written or queued: \(error)"
            }
        }
    }

    /// `BackupError`s become `Error: message (hint: ...)`.
    static func reported<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as BackupError {
            throw CommandError(error.description)
        } catch let error as EmbeddedServiceError {
            throw CommandError(error.description)
        }
    }

    static func bytes(_ count: UInt64) -> String { ByteCountFormatter.string(fromByteCount: Int64(clamping: count), countStyle: .binary) }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a base backup of the running embedded Postgres now.",
            discussion: """
                Runs pg_basebackup (plain format, WAL streamed alongside, fast checkpoint, with a manifest) \
                into <backup dir>/base/<UTC time>/, then applies retention ([backup] keep_count, keep_days) \
                and removes archived WAL older than the oldest kept backup. Needs the kernel running.
                """)

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let context = try Context(options)
            guard context.config.backup.enabled else {
                throw CommandError(
                    "[backup] enabled = false: the cluster archives no WAL, so a base backup could not be restored to a point in time; set enabled = true and restart the kernel")
            }
            guard context.postgres.isRunning else {
                throw CommandError(
                    "the embedded Postgres is not running (no server on \(context.postgres.clusterDirectory)); start the kernel with `meltybase serve` first, a base backup is taken from the running server"
                )
            }
            let maker = BaseBackupMaker(
                postgres: context.postgres, retention: BackupRetention(keepCount: context.config.backup.keepCount, keepDays: context.config.backup.keepDays))
            let (backup, removed) = try await BackupCommand.reported { try await maker.create(trigger: "manual") }
            print("base backup \(backup.name) taken: \(BackupCommand.bytes(backup.sizeBytes)), WAL \(backup.startWAL) .. \(backup.endWAL)")
            print("  \(context.store.path(of: backup.name))")
            if !removed.isEmpty { print("retention removed: \(removed.map(\.name).joined(separator: ", "))") }
            print(await context.audit(BackupAuditEntries.created(backup, removed: removed, actor: "cli"), databaseUp: true))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List base backups (newest first) and the WAL archive's range.",
            discussion: "A restore can target any time from the oldest backup's end to the newest archived WAL.")

        @OptionGroup var options: ConfigOptions

        @Flag(name: .long, help: "Print JSON: {\"backups\": [...], \"archive\": {...}, \"restorable_from\", \"restorable_until\"}.")
        var json = false

        func run() async throws {
            let context = try Context(options)
            let (backups, archive) = try await BackupCommand.reported { (try context.store.list(), try context.store.archive.scan()) }
            let restorableFrom = backups.last?.endTime
            let restorableUntil = archive.newestArchivedAt
            if json {
                var root: [String: Any] = [
                    "directory": context.store.root,
                    "backups": backups.map { backup -> [String: Any] in
                        [
                            "name": backup.name, "path": context.store.path(of: backup.name), "start_time": RecoveryTarget.iso8601(backup.startTime),
                            "end_time": RecoveryTarget.iso8601(backup.endTime), "start_lsn": backup.startLSN, "end_lsn": backup.endLSN,
                            "start_wal": backup.startWAL, "end_wal": backup.endWAL, "timeline": backup.timeline, "size_bytes": backup.sizeBytes,
                            "trigger": backup.trigger,
                        ]
                    },
                    "archive": [
                        "directory": context.store.walDirectory, "segments": archive.segments.count, "bytes": archive.totalBytes,
                        "first_segment": archive.oldest?.name ?? NSNull(), "last_segment": archive.newest?.name ?? NSNull(),
                        "last_archived_at": archive.newestArchivedAt.map(RecoveryTarget.iso8601) ?? NSNull(), "timelines": archive.historyTimelines,
                        "partial_segments": archive.partials.map(\.name),
                    ] as [String: Any],
                ]
                root["restorable_from"] = restorableFrom.map(RecoveryTarget.iso8601) ?? NSNull()
                root["restorable_until"] = restorableUntil.map(RecoveryTarget.iso8601) ?? NSNull()
                let data = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print("backup folder: \(context.store.root)")
            if backups.isEmpty {
                print("no base backups yet (the kernel takes one shortly after it starts; or run `meltybase backup create`)")
            } else {
                print("base backups (newest first):")
                for backup in backups {
                    print(
                        "  \(backup.name)  ended \(RecoveryTarget.iso8601(backup.endTime))  \(BackupCommand.bytes(backup.sizeBytes))  WAL \(backup.startWAL)..\(backup.endWAL)  \(backup.trigger)"
                    )
                }
            }
            if let first = archive.oldest, let last = archive.newest {
                print(
                    "WAL archive: \(archive.segments.count) segments \(first.name) .. \(last.name), \(BackupCommand.bytes(archive.totalBytes)), last archived \(archive.newestArchivedAt.map(RecoveryTarget.iso8601) ?? "?")"
                )
            } else {
                print("WAL archive: empty (\(context.store.walDirectory))")
            }
            if let restorableFrom, let restorableUntil, restorableFrom < restorableUntil {
                print("restorable: \(RecoveryTarget.iso8601(restorableFrom)) .. \(RecoveryTarget.iso8601(restorableUntil))")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every base backup (pg_verifybackup) and the WAL archive for gaps.",
            discussion: """
                Each base backup's files are checked against its manifest and its WAL is parsed. The archive \
                must hold every segment from the oldest backup's start segment to the newest archived one \
                (on any timeline); missing segments are named. Exits 0 when all is well, 1 otherwise.
                """)

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let context = try Context(options)
            let report = try await BackupCommand.reported { try await BackupVerifier(store: context.store, runner: context.runner).verify() }
            guard !report.backups.isEmpty else {
                throw CommandError("there is no base backup in \(context.store.baseDirectory) to verify; take one with `meltybase backup create` while the kernel runs")
            }
            for result in report.backups {
                if let problem = result.problem {
                    print("base backup \(result.backup.name): FAILED\n    \(problem.replacingOccurrences(of: "\n", with: "\n    "))")
                } else {
                    print("base backup \(result.backup.name): OK")
                }
            }
            if let from = report.checkedFrom, let to = report.checkedTo {
                if report.missing.isEmpty {
                    print("WAL archive: complete from \(from.name) to \(to.name)")
                } else {
                    let names = report.missing.prefix(50).map(\.name).joined(separator: "\n    ")
                    let more = report.missing.count > 50 ? "\n    ... and \(report.missing.count - 50) more" : ""
                    print("WAL archive: GAP, \(report.missing.count) segment(s) missing between \(from.name) and \(to.name):\n    \(names)\(more)")
                    print("  a restore cannot replay past the first missing segment; take a new base backup (`meltybase backup create`) to restore past the gap")
                }
            }
            if !report.isHealthy { throw ExitCode(1) }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build a cluster as it was at a point in time, and optionally put it in the kernel's place.",
            discussion: """
                Copies the newest base backup that ended before --to, replays the archived WAL up to --to on a \
                temporary Postgres (private socket, no TCP), promotes it, checks it and stops it. Without \
                --replace the kernel is not touched and the output says how to switch to the new cluster. \
                With --replace (the kernel must be stopped) the current cluster is kept as \
                postgres.before-restore-<time> and the restored one takes its place.

                --to takes "2026-12-06 01:02:03" (UTC when no zone is given), "2026-12-06T01:02:03.5Z" or \
                "2026-12-06 02:02:03+01:00".
                """)

        @OptionGroup var options: ConfigOptions

        @Option(name: .long, help: "The point in time to restore to (UTC unless a zone is given).")
        var to: String

        @Option(name: .long, help: "Folder for the restored cluster (default: <backup dir>/restores/<time>).")
        var into: String?

        @Flag(name: .long, help: "Put the restored cluster in the kernel's place (the kernel must be stopped); the old one is kept.")
        var replace = false

        @Flag(name: .long, help: "Do not ask for confirmation before --replace.")
        var yes = false

        func run() async throws {
            guard let target = RecoveryTarget.parse(to.trimmingCharacters(in: .whitespaces)) else {
                throw CommandError(
                    "--to \"\(to)\" is not a timestamp; use e.g. --to \"2026-12-06 01:02:03\" (UTC), \"2026-12-06T01:02:03.5Z\" or \"2026-12-06 02:02:03+01:00\"")
            }
            if replace && into != nil {
                throw CommandError("--replace restores next to the kernel's cluster and moves it into place; leave out --into")
            }
            let context = try Context(options)
            let kernelRunning = KernelBackups.isKernelRunning(dataDirectory: context.config.dataDirectory) || context.postgres.isRunning
            if replace && kernelRunning {
                throw CommandError(
                    "the kernel (or its embedded Postgres) is running on \(context.config.dataDirectory); stop it first (--replace swaps the cluster it uses), or restore without --replace"
                )
            }
            let restore = PointInTimeRestore(store: context.store, runner: context.runner)
            let backup = try await BackupCommand.reported { try restore.plan(target: target) }
            let stamp = BackupStore.stamp(Date())
            let cluster = context.postgres.clusterDirectory
            let destination: String
            if replace {
                destination = cluster + ".restore-" + stamp
            } else if let into {
                destination = URL(fileURLWithPath: into).standardizedFileURL.path
            } else {
                destination = context.store.restoresDirectory + "/" + stamp
            }
            if replace && !yes {
                print(
                    "Replace the kernel's cluster \(cluster) with its state at \(RecoveryTarget.iso8601(target)) (from base backup \(backup.name))?\nThe current cluster is kept as \(cluster).before-restore-\(stamp). Type yes to continue: ",
                    terminator: "")
                guard readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
                    throw CommandError("not confirmed; nothing was changed (pass --yes to skip the question)")
                }
            }
            let result = try await BackupCommand.reported {
                try await restore.restore(target: target, into: destination) { line in print(line) }
            }
            print(
                "restored to \(RecoveryTarget.iso8601(target)) from base backup \(result.backup.name): timeline \(result.timeline), databases \(result.databases.joined(separator: ", "))"
            )
            var aside: String?
            if replace {
                aside = try await BackupCommand.reported {
                    try KernelBackups.withDataDirectoryLocked(dataDirectory: context.config.dataDirectory) {
                        try PointInTimeRestore.replace(cluster: cluster, with: result.directory, stamp: stamp)
                    }
                }
                print("the kernel's cluster \(cluster) now holds the restored state; the previous cluster is kept at \(aside ?? "?")")
                print("start the kernel again: meltybase serve --config \(options.config)\(options.dataDir.map { " --data-dir \($0)" } ?? "")")
                print("then take a base backup on the new timeline: meltybase backup create")
            } else {
                print(
                    """
                    the restored cluster is in \(result.directory) (the kernel was not touched). To switch the kernel to it:
                      1. stop the kernel (systemctl stop meltybase, or Ctrl-C on meltybase serve)
                      2. mv \(cluster) \(cluster).before-restore-\(stamp)
                      3. mv \(result.directory) \(cluster)
                      4. start the kernel again (meltybase serve)
                    or run this restore again with --replace while the kernel is stopped, which does steps 2 and 3.
                    """)
            }
            var entry = BackupAuditEntries.restored(result, target: target, replacedAside: aside, actor: "cli")
            if replace { entry.details["directory"] = cluster }
            print(await context.audit(entry, databaseUp: kernelRunning && !replace))
        }
    }
}
