import Foundation
import MeltyEmbedded

/// Takes base backups of the running embedded cluster (`pg_basebackup` over its unix
/// socket, as the account Postgres runs as) and applies retention afterwards.
///
/// Each backup is plain format (`-Fp`) with the WAL it needs streamed alongside (`-X
/// stream`), so it is consistent on its own, and a manifest for `pg_verifybackup`. It is
/// written as `base/<stamp>.partial` and renamed when complete; the metadata file
/// `base/<stamp>.json` is written last, so only complete backups are ever listed.
public struct BaseBackupMaker: Sendable {
    /// Where backups go.
    public let store: BackupStore
    /// Runs the tools.
    public let runner: ToolRunner
    /// The embedded server's socket folder.
    public let socketDirectory: String
    /// What is kept after each backup.
    public let retention: BackupRetention

    /// A maker for the embedded cluster `postgres` keeping what `retention` says.
    public init(postgres: EmbeddedPostgres, retention: BackupRetention) {
        store = BackupStore(root: postgres.backupDirectory)
        runner = ToolRunner(postgres: postgres)
        socketDirectory = postgres.socketDirectory
        self.retention = retention
    }

    /// Takes a base backup now, then prunes; the new backup and the ones removed.
    /// `trigger` is recorded (`manual`, `scheduled`).
    /// File work (listing, the manifest, renames, sizes) runs on threads of its own
    /// (``ToolRunner/onOwnThread(_:)``), never on the cooperative pool.
    public func create(trigger: String) async throws -> (backup: BaseBackup, removed: [BaseBackup]) {
        let maker = self
        try await ToolRunner.onOwnThread { try maker.createFolders() }
        let backup = try await store.withLock { () async throws -> BaseBackup in
            let store = store
            try await ToolRunner.onOwnThread { store.removeIncomplete() }
            let started = Date()
            let name = store.newName(at: started)
            let partial = store.path(of: name) + ".partial"
            let outcome = try await runner.run([
                runner.tool("pg_basebackup"), "-D", partial, "-Fp", "-X", "stream", "--checkpoint=fast", "--manifest-checksums=CRC32C",
                "-h", socketDirectory, "-p", "5432", "-U", "meltybase", "--no-password", "--label", "meltybase \(name)",
            ])
            guard outcome.status == 0 else {
                _ = try? await ToolRunner.onOwnThread { try FileManager.default.removeItem(atPath: partial) }
                throw BackupError(
                    "pg_basebackup failed (exit \(outcome.status)): \(outcome.output.trimmingCharacters(in: .whitespacesAndNewlines))",
                    hint: "check that the embedded Postgres runs (meltybase serve) and that \(store.root) has free space")
            }
            let ended = Date()
            return try await ToolRunner.onOwnThread {
                var backup = try Self.describe(folder: partial, name: name, started: started, ended: ended, trigger: trigger)
                let final = store.path(of: name)
                try FileManager.default.moveItem(atPath: partial, toPath: final)
                backup.sizeBytes = BackupStore.size(of: final)
                try store.save(backup)
                return backup
            }
        }
        let removed = try await prune()
        return (backup, removed)
    }

    /// Removes the backups retention no longer keeps (never the newest), then the archived
    /// WAL older than the oldest kept backup's start (`pg_archivecleanup`); the removed backups.
    public func prune() async throws -> [BaseBackup] {
        try await store.withLock {
            let store = store
            let (keep, remove) = retention.apply(to: try await ToolRunner.onOwnThread { try store.list() }, now: Date())
            for backup in remove {
                try await ToolRunner.onOwnThread { try store.remove(backup) }
            }
            if let oldest = keep.last, try await ToolRunner.onOwnThread({ FileManager.default.fileExists(atPath: store.walDirectory) }) {
                // `-x .gz` strips the extension before comparing: compressed segments (`X.gz`) and
                // uncompressed ones (archived before compression, `X`) are both removed.
                try await runner.check(
                    [runner.tool("pg_archivecleanup"), "-x", ".gz", store.walDirectory, oldest.startWAL],
                    hint: "check the permissions of \(store.walDirectory)")
            }
            return remove
        }
    }

    /// The metadata of the backup in `folder`, from its `backup_label` and `backup_manifest`.
    static func describe(folder: String, name: String, started: Date, ended: Date, trigger: String) throws -> BaseBackup {
        guard let label = try? String(contentsOfFile: folder + "/backup_label", encoding: .utf8) else {
            throw BackupError("the backup in \(folder) has no backup_label", hint: "pg_basebackup did not finish; run the backup again")
        }
        let parsed = try BackupLabel(text: label)
        guard let manifestData = FileManager.default.contents(atPath: folder + "/backup_manifest"),
            let manifest = try? JSONSerialization.jsonObject(with: manifestData) as? [String: Any],
            let ranges = manifest["WAL-Ranges"] as? [[String: Any]], let last = ranges.last,
            let endText = last["End-LSN"] as? String, let endLSN = WALSegment.parseLSN(endText)
        else {
            throw BackupError("the backup in \(folder) has no readable backup_manifest", hint: "pg_basebackup did not finish; run the backup again")
        }
        let timeline = (last["Timeline"] as? NSNumber)?.uint32Value ?? parsed.timeline
        return BaseBackup(
            name: name, startTime: parsed.startTime ?? started, endTime: ended, startLSN: WALSegment.formatLSN(parsed.startLSN),
            endLSN: WALSegment.formatLSN(endLSN), startWAL: parsed.startWAL, endWAL: WALSegment(containing: endLSN, timeline: timeline).name,
            timeline: parsed.timeline, sizeBytes: 0, trigger: trigger)
    }

    private func createFolders() throws {
        for folder in [store.root, store.baseDirectory] where !FileManager.default.fileExists(atPath: folder) {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try runner.account?.own(folder)
        }
    }
}

/// The fields of a `backup_label` file that metadata needs.
struct BackupLabel {
    var startLSN: UInt64
    var startWAL: String
    var startTime: Date?
    var timeline: UInt32

    /// Parses `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`, `START TIME`
    /// and `START TIMELINE`.
    init(text: String) throws {
        var lsn: UInt64?
        var wal: String?
        var time: Date?
        var timeline: UInt32 = 1
        for line in text.split(separator: "\n") {
            if line.hasPrefix("START WAL LOCATION: ") {
                let rest = line.dropFirst("START WAL LOCATION: ".count)
                lsn = WALSegment.parseLSN(rest.prefix { $0 != " " })
                if let open = rest.range(of: "(file "), let close = rest.range(of: ")", range: open.upperBound..<rest.endIndex) {
                    wal = String(rest[open.upperBound..<close.lowerBound])
                }
            } else if line.hasPrefix("START TIME: ") {
                // `2026-12-06 01:02:03 UTC`
                time = RecoveryTarget.parse(String(line.dropFirst("START TIME: ".count)).replacingOccurrences(of: " UTC", with: "Z"))
            } else if line.hasPrefix("START TIMELINE: ") {
                timeline = UInt32(line.dropFirst("START TIMELINE: ".count).trimmingCharacters(in: .whitespaces)) ?? 1
            }
        }
        guard let lsn, let wal, WALSegment(name: wal) != nil else {
            throw BackupError("backup_label has no START WAL LOCATION", hint: "run the backup again")
        }
        startLSN = lsn
        startWAL = wal
        startTime = time
        self.timeline = timeline
    }
}
