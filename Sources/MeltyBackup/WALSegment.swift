/// One WAL segment's name: timeline, log and segment number, each 8 hex digits
/// (`000000010000000000000002`), and the arithmetic between names, positions and LSNs.
///
/// A segment's position counts segments from the start of WAL: `log * segmentsPerLog + seg`,
/// where a "log" spans 4 GiB (`0x1_0000_0000` bytes), so with 16 MiB segments (the
/// default) there are 256 per log and names run `...000000FF` then `...0000000100000000`.
public struct WALSegment: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The default segment size (16 MiB).
    public static let defaultSize: UInt64 = 16 * 1024 * 1024
    /// Bytes covered by one "log" number.
    public static let bytesPerLog: UInt64 = 0x1_0000_0000

    /// The timeline.
    public var timeline: UInt32
    /// The segment's position from the start of WAL (independent of the timeline).
    public var position: UInt64
    /// The segment size this position counts in.
    public var segmentSize: UInt64

    /// The segment at `position` on `timeline`.
    public init(timeline: UInt32, position: UInt64, segmentSize: UInt64 = WALSegment.defaultSize) {
        self.timeline = timeline
        self.position = position
        self.segmentSize = segmentSize
    }

    /// Segments per log number for `segmentSize`.
    public static func segmentsPerLog(_ segmentSize: UInt64) -> UInt64 { bytesPerLog / segmentSize }

    /// Parses a 24-hex-digit segment name; nil for anything else (history files, partial
    /// segments, a segment number beyond the log's range for this segment size).
    public init?(name: some StringProtocol, segmentSize: UInt64 = WALSegment.defaultSize) {
        guard name.utf8.count == 24, name.utf8.allSatisfy({ Self.isHex($0) }) else { return nil }
        let text = String(name)
        let start = text.startIndex
        func field(_ index: Int) -> UInt32? {
            let from = text.index(start, offsetBy: index * 8)
            return UInt32(text[from..<text.index(from, offsetBy: 8)], radix: 16)
        }
        guard let timeline = field(0), let log = field(1), let seg = field(2), timeline > 0, UInt64(seg) < Self.segmentsPerLog(segmentSize) else {
            return nil
        }
        self.init(timeline: timeline, position: UInt64(log) * Self.segmentsPerLog(segmentSize) + UInt64(seg), segmentSize: segmentSize)
    }

    /// The segment holding byte `lsn` of WAL on `timeline`.
    public init(containing lsn: UInt64, timeline: UInt32, segmentSize: UInt64 = WALSegment.defaultSize) {
        self.init(timeline: timeline, position: lsn / segmentSize, segmentSize: segmentSize)
    }

    /// The log number (the name's middle 8 digits).
    public var log: UInt32 { UInt32(truncatingIfNeeded: position / Self.segmentsPerLog(segmentSize)) }
    /// The segment number within its log (the name's last 8 digits).
    public var segmentNumber: UInt32 { UInt32(truncatingIfNeeded: position % Self.segmentsPerLog(segmentSize)) }

    /// The 24-hex-digit file name.
    public var name: String { Self.hex8(timeline) + Self.hex8(log) + Self.hex8(segmentNumber) }
    /// The file name.
    public var description: String { name }

    /// The next segment on the same timeline.
    public var next: WALSegment { WALSegment(timeline: timeline, position: position + 1, segmentSize: segmentSize) }

    /// The first LSN inside the segment.
    public var startLSN: UInt64 { position * segmentSize }

    /// Orders by position, then timeline.
    public static func < (left: WALSegment, right: WALSegment) -> Bool {
        (left.position, left.timeline) < (right.position, right.timeline)
    }

    /// Parses an LSN written as Postgres does (`16/B374D848`: high and low 32 bits in hex).
    public static func parseLSN(_ text: some StringProtocol) -> UInt64? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...8).contains(parts[0].count), (1...8).contains(parts[1].count),
            let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16)
        else { return nil }
        return high << 32 | low
    }

    /// An LSN as Postgres writes it (`16/B374D848`).
    public static func formatLSN(_ lsn: UInt64) -> String {
        String(lsn >> 32, radix: 16, uppercase: true) + "/" + String(lsn & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    private static func hex8(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}
