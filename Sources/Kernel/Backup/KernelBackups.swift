import Foundation
import Logging
import MeltyBackup
import MeltyEmbedded

extension KernelConfig {
    /// The embedded Postgres of this configuration, archiving its WAL as `[backup]` says.
    /// Every start of the cluster goes through here, so no start skips archiving (a segment
    /// completed while archiving is off would never reach the archive).
    public func embeddedPostgres(logger: Logger) throws -> EmbeddedPostgres {
        let archiving = backup.enabled ? EmbeddedPostgres.Archiving(directory: backup.directory, timeoutSeconds: backup.archiveTimeoutSeconds) : nil
        return try EmbeddedPostgres(dataDirectory: dataDirectory, logger: logger, archiving: archiving)
    }
}

/// The kernel's side of backups: the schedule of the process that owns the embedded
/// Postgres, audit entries in the system database, and the data directory's lock for the CLI.
public enum KernelBackups {
    /// What runs while the kernel owns an archiving cluster: the base backup schedule and
    /// the WAL segment switcher that holds the archive to `archive_timeout_seconds`.
    public struct Running: Sendable {
        /// Scheduled base backups and retention.
        public let scheduler: BackupScheduler
        /// Closes the WAL segment every `archive_timeout_seconds` after a commit.
        public let switcher: WALSegmentSwitcher

        /// Stops both.
        public func stop() {
            scheduler.stop()
            switcher.stop()
        }
    }

    /// Starts scheduled base backups of `postgres` and its WAL segment switcher (nil when
    /// `[backup]` is off or the cluster does not archive); audit entries go to the system
    /// database.
    public static func start(config: KernelConfig, postgres: EmbeddedPostgres, logger: Logger) -> Running? {
        guard config.backup.enabled, postgres.archiving != nil else { return nil }
        let maker = BaseBackupMaker(postgres: postgres, retention: BackupRetention(keepCount: config.backup.keepCount, keepDays: config.backup.keepDays))
        let conninfo = postgres.conninfo
        let scheduler = BackupScheduler(maker: maker, intervalHours: config.backup.baseBackupIntervalHours, logger: logger) { entry in
            try await audit(entry, conninfo: conninfo)
        }
        logger.notice(
            config.backup.baseBackupIntervalHours > 0
                ? "WAL is archived continuously; base backups are scheduled" : "WAL is archived continuously; no base backups are scheduled (base_backup_interval_hours = 0)",
            metadata: [
                "backups": "\(postgres.backupDirectory)", "archive_timeout_seconds": "\(config.backup.archiveTimeoutSeconds)",
                "interval_hours": "\(config.backup.baseBackupIntervalHours)",
            ])
        scheduler.start()
        let switcher = WALSegmentSwitcher(conninfo: conninfo, intervalSeconds: config.backup.archiveTimeoutSeconds, logger: logger)
        switcher.start()
        return Running(scheduler: scheduler, switcher: switcher)
    }

    /// Writes `entry` into the audit chain of the system database at `conninfo`.
    public static func audit(_ entry: PendingAudit.Entry, conninfo: String) async throws {
        let database = SystemDatabase(conninfo: conninfo, poolSize: 1)
        defer { database.close() }
        try await AuditChain.append(to: database, actor: entry.actor, action: entry.action, target: entry.target, details: entry.details)
    }

    /// Whether a kernel holds the data directory (a `meltybase serve` runs on it).
    public static func isKernelRunning(dataDirectory: String) -> Bool {
        DataDirectoryLock.isHeld(dataDirectory: dataDirectory)
    }

    /// Runs `body` holding the data directory's lock, so no kernel starts meanwhile; throws
    /// naming the holder when a kernel runs.
    public static func withDataDirectoryLocked<T>(dataDirectory: String, _ body: () throws -> T) throws -> T {
        let lock = try DataDirectoryLock(dataDirectory: dataDirectory)
        defer { withExtendedLifetime(lock) {} }
        return try body()
    }
}
