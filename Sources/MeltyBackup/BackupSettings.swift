/// The `[backup]` section of plugins.toml: continuous WAL archiving and scheduled base
/// backups of the embedded Postgres (an external `[database] url` is not backed up).
public struct BackupSettings: Sendable, Equatable {
    /// Whether the embedded cluster archives WAL and takes scheduled base backups.
    public var enabled: Bool
    /// The backup folder; nil: `backups` beside the cluster (`<data_dir>/backups`).
    public var directory: String?
    /// `archive_timeout`: at most this many seconds of committed work wait unarchived (the RPO).
    public var archiveTimeoutSeconds: Int
    /// Hours between scheduled base backups; 0: none scheduled (only `meltybase backup create`).
    public var baseBackupIntervalHours: Int
    /// Base backups kept (the newest ones).
    public var keepCount: Int
    /// Base backups older than this many days are removed; 0: no age limit.
    public var keepDays: Int

    /// The defaults: enabled, 60 s archive timeout, a base backup every 24 h, 7 kept, 14 days.
    public init(
        enabled: Bool = true, directory: String? = nil, archiveTimeoutSeconds: Int = 60, baseBackupIntervalHours: Int = 24, keepCount: Int = 7,
        keepDays: Int = 14
    ) {
        self.enabled = enabled
        self.directory = directory
        self.archiveTimeoutSeconds = archiveTimeoutSeconds
        self.baseBackupIntervalHours = baseBackupIntervalHours
        self.keepCount = keepCount
        self.keepDays = keepDays
    }
}
