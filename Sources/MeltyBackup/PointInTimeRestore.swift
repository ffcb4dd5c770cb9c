import Foundation
import MeltyEmbedded
import MeltyProcess

/// `meltybase backup restore --to <time>`: a new cluster built from the newest base backup
/// that ended before the target, with the archived WAL replayed up to the target.
///
/// The backup is copied (as the Postgres account) into the destination, `recovery.signal`
/// is written, and a temporary Postgres starts on the copy: its own socket folder, no TCP,
/// `restore_command` fetching from the archive (``WALArchiveCommands/restore(directory:)``),
/// `recovery_target_time` and `recovery_target_action = 'promote'`. Once the server has promoted it is checked
/// (connect, list the databases) and stopped. The temporary server does not archive (an
/// unused restore leaves the archive untouched); the files it wrote on its new timeline
/// are marked for archiving (`archive_status/*.ready`), so a kernel started on the cluster
/// archives them.
public struct PointInTimeRestore: Sendable {
    /// The backups and the archive.
    public let store: BackupStore
    /// Runs the tools as the Postgres account.
    public let runner: ToolRunner

    /// A restore from `store` using `runner`.
    public init(store: BackupStore, runner: ToolRunner) {
        self.store = store
        self.runner = runner
    }

    /// What a restore produced.
    public struct Result: Sendable {
        /// The base backup it started from.
        public var backup: BaseBackup
        /// The new cluster (`PGDATA`).
        public var directory: String
        /// The timeline the cluster continues on after promotion.
        public var timeline: String
        /// The databases found in the restored cluster.
        public var databases: [String]
        /// The temporary server's log.
        public var logFile: String
    }

    /// The base backup a restore to `target` starts from; throws when the target is before
    /// the oldest backup's end or after the end of the archive.
    public func plan(target: Date) throws -> BaseBackup {
        let backups = try store.list()
        guard let oldest = backups.last else {
            throw BackupError("there is no base backup in \(store.baseDirectory)", hint: "take one with `meltybase backup create` while the kernel runs")
        }
        guard let backup = backups.first(where: { $0.endTime < target }) else {
            throw BackupError(
                "the target \(RecoveryTarget.iso8601(target)) is before the oldest base backup, which ended at \(RecoveryTarget.iso8601(oldest.endTime))",
                hint: "pick a time after \(RecoveryTarget.iso8601(oldest.endTime)); `meltybase backup list` shows what can be restored")
        }
        let archive = try store.archive.scan()
        guard let archivedUntil = archive.newestArchivedAt, target <= archivedUntil else {
            let until = archive.newestArchivedAt.map { "the newest WAL was archived at \(RecoveryTarget.iso8601($0))" } ?? "the archive is empty"
            throw BackupError(
                "the target \(RecoveryTarget.iso8601(target)) is after the end of the archive: \(until)",
                hint:
                    "pick an earlier time, or wait: recovery stops at the first commit after the target, so a later commit must be archived, which happens within [backup] archive_timeout_seconds (at once after `SELECT pg_switch_wal()`)"
            )
        }
        return backup
    }

    /// Restores to `target` into `destination` (absent or empty). `progress` gets one line per step.
    public func restore(target: Date, into destination: String, progress: @escaping @Sendable (String) -> Void) async throws -> Result {
        let backup = try plan(target: target)
        return try await ToolRunner.onOwnThread { try self.restoreBlocking(backup: backup, target: target, destination: destination, progress: progress) }
    }

    private func restoreBlocking(backup: BaseBackup, target: Date, destination: String, progress: @Sendable (String) -> Void) throws -> Result {
        let manager = FileManager.default
        let wal = store.walDirectory
        if manager.fileExists(atPath: destination) {
            guard (try? manager.contentsOfDirectory(atPath: destination))?.isEmpty == true else {
                throw BackupError("\(destination) exists and is not empty", hint: "pass --into with a new folder, or remove it")
            }
        }
        let parent = (destination as NSString).deletingLastPathComponent
        if !manager.fileExists(atPath: parent) {
            try manager.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try runner.account?.own(parent)
        }
        if !manager.fileExists(atPath: destination) {
            try manager.createDirectory(atPath: destination, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        }
        try runner.account?.own(destination)
        if let account = runner.account, !account.canReach(directory: destination) {
            throw BackupError(
                "\(account.name), which runs Postgres, cannot enter \(destination)", hint: "pass --into with a folder \(account.name) can reach")
        }

        progress("copying base backup \(backup.name) (\(ByteCountFormatter.string(fromByteCount: Int64(clamping: backup.sizeBytes), countStyle: .binary))) to \(destination)")
        let copy = try runner.runHere(["/bin/cp", "-a", store.path(of: backup.name) + "/.", destination + "/"])
        guard copy.status == 0 else {
            throw BackupError("copying the base backup failed: \(copy.output)", hint: "check the free space and permissions of \(parent)")
        }
        try? manager.removeItem(atPath: destination + "/backup_manifest")
        manager.createFile(atPath: destination + "/recovery.signal", contents: Data(), attributes: [.posixPermissions: 0o600])
        try runner.account?.own(destination + "/recovery.signal")

        let sockets = try Self.privateSocketFolder(owner: runner.account)
        defer { try? manager.removeItem(atPath: sockets) }
        let logFile = destination + ".restore.log"
        manager.createFile(atPath: logFile, contents: nil, attributes: [.posixPermissions: 0o600])
        let server = Process()
        let (executable, arguments) = runner.wrapped(
            EmbeddedPostgres.serverCommand(binDirectory: runner.binDirectory, cluster: destination, socketDirectory: sockets) + [
                "-c", "archive_mode=off", "-c", "restore_command=\(WALArchiveCommands.restore(directory: wal))",
                "-c", "recovery_target_time=\(RecoveryTarget.postgres(target))", "-c", "recovery_target_action=promote",
                "-c", "recovery_target_timeline=latest",
            ])
        server.executableURL = URL(fileURLWithPath: executable)
        server.arguments = arguments
        server.currentDirectoryURL = URL(fileURLWithPath: "/")
        server.standardInput = FileHandle.nullDevice
        let log = FileHandle(forWritingAtPath: logFile)
        server.standardOutput = log
        server.standardError = log
        progress("replaying archived WAL up to \(RecoveryTarget.iso8601(target)) (log: \(logFile))")
        try server.run()
        defer {
            if server.isRunning {
                kill(server.processIdentifier, SIGINT)
                let deadline = Date().addingTimeInterval(120)
                while server.isRunning && Date() < deadline { usleep(50_000) }
                if server.isRunning { kill(server.processIdentifier, SIGKILL) }
                server.waitUntilExit()
            }
            try? log?.close()
        }
        func sql(_ query: String) -> String? {
            guard
                let outcome = try? runner.runHere(
                    [runner.tool("psql"), "-h", sockets, "-p", "5432", "-U", "meltybase", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", query]),
                outcome.status == 0
            else { return nil }
            return outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        while true {
            guard server.isRunning else {
                throw BackupError(
                    "the temporary Postgres stopped before recovery reached the target:\n\(Self.tail(of: logFile))",
                    hint: "see \(logFile); \"recovery ended before configured recovery target was reached\" means WAL up to the target is missing from \(wal)")
            }
            if sql("SELECT pg_is_in_recovery()") == "f" { break }
            usleep(250_000)
        }
        progress("recovery reached the target and the cluster was promoted; checking it")
        guard let names = sql("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1"),
            let timeline = sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
        else {
            throw BackupError("the restored cluster does not answer queries:\n\(Self.tail(of: logFile))", hint: "see \(logFile)")
        }
        kill(server.processIdentifier, SIGINT)
        server.waitUntilExit()
        try markForArchiving(cluster: destination)
        progress("restored cluster checked and stopped")
        return Result(backup: backup, directory: destination, timeline: timeline, databases: names.split(separator: "\n").map(String.init), logFile: logFile)
    }

    /// Marks the WAL the promoted cluster wrote on its new timeline for archiving (`.ready`:
    /// the history file and complete segments before the current one), and everything else
    /// in pg_wal as already archived (`.done`), so the kernel's archiver neither misses the new
    /// timeline nor re-archives a segment under a name the archive holds with other content.
    func markForArchiving(cluster: String) throws {
        let control = try runner.runHere([runner.tool("pg_controldata"), "-D", cluster])
        var current: WALSegment?
        for line in control.output.split(separator: "\n") where line.hasPrefix("Latest checkpoint's REDO WAL file:") {
            current = WALSegment(name: line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "")
        }
        guard let current else {
            throw BackupError("pg_controldata did not name the current WAL file: \(control.output)", hint: "check the restored cluster with pg_controldata")
        }
        let walFolder = cluster + "/pg_wal"
        let status = walFolder + "/archive_status"
        for name in try FileManager.default.contentsOfDirectory(atPath: walFolder) {
            if FileManager.default.fileExists(atPath: "\(status)/\(name).ready") || FileManager.default.fileExists(atPath: "\(status)/\(name).done") { continue }
            let mark: String
            switch WALArchiveFile(name: name) {
            case .timelineHistory(let timeline) where timeline == current.timeline: mark = "ready"
            case .segment(let segment) where segment.timeline == current.timeline && segment.position < current.position: mark = "ready"
            case .segment, .partial, .backupHistory, .timelineHistory: mark = "done"
            case .other: continue
            }
            let path = "\(status)/\(name).\(mark)"
            FileManager.default.createFile(atPath: path, contents: Data(), attributes: [.posixPermissions: 0o600])
            try runner.account?.own(path)
        }
    }

    /// Moves `cluster` aside as `<cluster>.before-restore-<stamp>` and `restored` into its
    /// place; returns where the old cluster went. The caller holds the data directory's lock.
    public static func replace(cluster: String, with restored: String, stamp: String) throws -> String {
        let manager = FileManager.default
        let aside = cluster + ".before-restore-" + stamp
        if manager.fileExists(atPath: cluster) {
            try manager.moveItem(atPath: cluster, toPath: aside)
        }
        do {
            try manager.moveItem(atPath: restored, toPath: cluster)
        } catch {
            if manager.fileExists(atPath: aside) { try? manager.moveItem(atPath: aside, toPath: cluster) }
            throw BackupError("cannot move \(restored) to \(cluster): \(error)", hint: "restore with --into a folder on the same file system as \(cluster)")
        }
        return aside
    }

    /// A fresh 0700 socket folder under /tmp (short enough for a socket path), owned by `owner`.
    static func privateSocketFolder(owner: SystemAccount?) throws -> String {
        var template = Array("/tmp/meltybase-restore-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        guard made else { throw BackupError("cannot create a socket folder in /tmp: \(String(cString: strerror(errno)))", hint: "check /tmp") }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try owner?.own(path)
        return path
    }

    /// The last lines of `file`.
    static func tail(of file: String, lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}
