import Foundation

/// One base backup's metadata, stored as `<backup dir>/base/<name>.json` beside the backup's
/// folder `<backup dir>/base/<name>/` (a plain-format `pg_basebackup` with its WAL and manifest).
public struct BaseBackup: Codable, Sendable, Equatable {
    /// The folder name: the UTC start time, `20261206T012345Z`.
    public var name: String
    /// When `pg_basebackup` started (the backup's START TIME).
    public var startTime: Date
    /// When it finished: every target time after this one can be restored from this backup.
    public var endTime: Date
    /// The backup's start LSN (`0/2000028`).
    public var startLSN: String
    /// Its end LSN: recovery is consistent from here on.
    public var endLSN: String
    /// The WAL segment holding the start LSN: the archive must hold everything from here.
    public var startWAL: String
    /// The WAL segment holding the end LSN.
    public var endWAL: String
    /// The timeline the backup was taken on.
    public var timeline: UInt32
    /// Bytes on disk.
    public var sizeBytes: UInt64
    /// `manual` (`meltybase backup create`) or `scheduled`.
    public var trigger: String

    /// A backup's metadata.
    public init(
        name: String, startTime: Date, endTime: Date, startLSN: String, endLSN: String, startWAL: String, endWAL: String, timeline: UInt32,
        sizeBytes: UInt64, trigger: String
    ) {
        self.name = name
        self.startTime = startTime
        self.endTime = endTime
        self.startLSN = startLSN
        self.endLSN = endLSN
        self.startWAL = startWAL
        self.endWAL = endWAL
        self.timeline = timeline
        self.sizeBytes = sizeBytes
        self.trigger = trigger
    }
}
