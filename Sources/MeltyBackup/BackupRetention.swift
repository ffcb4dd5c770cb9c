import Foundation

/// Which base backups retention keeps: at most `keepCount` (the newest), none older than
/// `keepDays` days (0: no age limit), and always the newest one whatever its age.
public struct BackupRetention: Sendable, Equatable {
    /// Backups kept at most.
    public var keepCount: Int
    /// Maximum age in days; 0: no limit.
    public var keepDays: Int

    /// A policy keeping `keepCount` backups of at most `keepDays` days.
    public init(keepCount: Int, keepDays: Int) {
        self.keepCount = keepCount
        self.keepDays = keepDays
    }

    /// Splits `backups` (any order) into those to keep and those to remove, newest first.
    public func apply(to backups: [BaseBackup], now: Date) -> (keep: [BaseBackup], remove: [BaseBackup]) {
        let sorted = backups.sorted { $0.startTime > $1.startTime }
        var keep: [BaseBackup] = []
        var remove: [BaseBackup] = []
        let oldestAllowed = now.addingTimeInterval(-Double(keepDays) * 86_400)
        for (index, backup) in sorted.enumerated() {
            let withinCount = index < max(1, keepCount)
            let withinAge = keepDays == 0 || backup.startTime >= oldestAllowed
            if index == 0 || (withinCount && withinAge) { keep.append(backup) } else { remove.append(backup) }
        }
        return (keep, remove)
    }
}
