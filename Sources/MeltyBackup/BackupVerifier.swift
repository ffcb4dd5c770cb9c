import Foundation

/// `meltybase backup verify`: every base backup checked with `pg_verifybackup` (files
/// against the manifest, and its WAL), and the archive checked for gaps from the oldest
/// backup's start segment to the newest archived segment.
public struct BackupVerifier: Sendable {
    /// The backups and the archive.
    public let store: BackupStore
    /// Runs `pg_verifybackup`.
    public let runner: ToolRunner

    /// A verifier of `store` using `runner`'s tools.
    public init(store: BackupStore, runner: ToolRunner) {
        self.store = store
        self.runner = runner
    }

    /// One backup's result.
    public struct BackupResult: Sendable {
        /// The backup.
        public var backup: BaseBackup
        /// Nil when it verified; else pg_verifybackup's complaint.
        public var problem: String?
    }

    /// The whole result.
    public struct Report: Sendable {
        /// Each backup, newest first.
        public var backups: [BackupResult]
        /// The archive's contents.
        public var archive: WALArchive.Contents
        /// The first segment that must be archived (the oldest backup's start); nil without backups.
        public var checkedFrom: WALSegment?
        /// The newest archived segment.
        public var checkedTo: WALSegment?
        /// Segments missing in between.
        public var missing: [WALSegment]

        /// Whether every backup verified and the archive has no gap.
        public var isHealthy: Bool { missing.isEmpty && backups.allSatisfy { $0.problem == nil } && !backups.isEmpty }
    }

    /// Verifies everything; throws only when the folder cannot be read.
    public func verify() async throws -> Report {
        let backups = try store.list()
        var results: [BackupResult] = []
        for backup in backups {
            let outcome = try await runner.run([runner.tool("pg_verifybackup"), "--quiet", store.path(of: backup.name)])
            let text = outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)
            results.append(BackupResult(backup: backup, problem: outcome.status == 0 ? nil : (text.isEmpty ? "pg_verifybackup exited with \(outcome.status)" : text)))
        }
        let contents = try store.archive.scan()
        var report = Report(backups: results, archive: contents, checkedFrom: nil, checkedTo: contents.newest, missing: [])
        if let oldest = backups.last, let start = WALSegment(name: oldest.startWAL, segmentSize: contents.segmentSize) {
            report.checkedFrom = start
            let end = contents.newest ?? start
            report.checkedTo = end
            report.missing = WALArchive.gaps(in: contents.segments, from: start, to: end)
        }
        return report
    }
}
