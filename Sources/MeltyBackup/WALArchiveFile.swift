/// A file in the WAL archive, classified by its name. A compressed file (`<name>.gz`, what
/// the archive command stores) is classified as the file it holds.
public enum WALArchiveFile: Equatable, Sendable {
    /// A complete segment (`000000010000000000000002`).
    case segment(WALSegment)
    /// The last, incomplete segment of a timeline that ended at a promotion (`....partial`).
    case partial(WALSegment)
    /// A backup history file (`000000010000000000000002.00000028.backup`).
    case backupHistory(WALSegment)
    /// A timeline history file (`00000002.history`).
    case timelineHistory(timeline: UInt32)
    /// Anything else (the archive command's temporary files, stray files).
    case other

    /// Classifies the file called `name`.
    public init(name: String, segmentSize: UInt64 = WALSegment.defaultSize) {
        let name = Self.uncompressedName(name)
        if let segment = WALSegment(name: name, segmentSize: segmentSize) {
            self = .segment(segment)
        } else if name.hasSuffix(".partial"), let segment = WALSegment(name: name.dropLast(8), segmentSize: segmentSize) {
            self = .partial(segment)
        } else if name.hasSuffix(".backup"), name.utf8.count == 24 + 1 + 8 + 7, let segment = WALSegment(name: name.prefix(24), segmentSize: segmentSize) {
            self = .backupHistory(segment)
        } else if name.hasSuffix(".history"), name.utf8.count == 16, let timeline = UInt32(name.prefix(8), radix: 16), timeline > 0,
            name.prefix(8).utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains($0) })
        {
            self = .timelineHistory(timeline: timeline)
        } else {
            self = .other
        }
    }

    /// `name` without a `.gz` extension (the name of the file a compressed one holds).
    public static func uncompressedName(_ name: String) -> String {
        name.hasSuffix(".gz") ? String(name.dropLast(3)) : name
    }
}
