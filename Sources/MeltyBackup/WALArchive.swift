import Foundation

/// The archived WAL folder (`<backup dir>/wal`): what it holds and whether it has gaps.
public struct WALArchive: Sendable {
    /// The folder.
    public let directory: String

    /// The archive in `directory`.
    public init(directory: String) {
        self.directory = directory
    }

    /// What a scan found.
    public struct Contents: Sendable, Equatable {
        /// Complete segments, sorted by position then timeline.
        public var segments: [WALSegment] = []
        /// Partial segments (ends of abandoned timelines).
        public var partials: [WALSegment] = []
        /// Timelines with a history file.
        public var historyTimelines: [UInt32] = []
        /// Backup history files' segments.
        public var backupHistories: [WALSegment] = []
        /// Bytes of every file.
        public var totalBytes: UInt64 = 0
        /// When the newest file (segment or partial) was archived; nil for an empty archive.
        public var newestArchivedAt: Date?
        /// The segment size the names were read with (the size of the archived segments).
        public var segmentSize: UInt64 = WALSegment.defaultSize

        /// An empty archive.
        public init() {}

        /// The oldest complete segment.
        public var oldest: WALSegment? { segments.first }
        /// The newest complete segment.
        public var newest: WALSegment? { segments.last }
    }

    /// Lists the folder; an absent folder is an empty archive.
    public func scan() throws -> Contents {
        var contents = Contents()
        let manager = FileManager.default
        guard manager.fileExists(atPath: directory) else { return contents }
        let names = try manager.contentsOfDirectory(atPath: directory)
        // The size of a complete segment file is the cluster's segment size: an uncompressed
        // file's size, or the size a compressed one holds (gzip's trailer).
        for name in names where WALArchiveFile.uncompressedName(name).utf8.count == 24 {
            let path = directory + "/" + name
            let size = name.hasSuffix(".gz") ? Self.gzipUncompressedSize(path) : ((try? manager.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value
            if let size, size >= 1 << 20, size & (size - 1) == 0 {
                contents.segmentSize = size
                break
            }
        }
        for name in names {
            let attributes = try? manager.attributesOfItem(atPath: directory + "/" + name)
            contents.totalBytes += (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
            let modified = attributes?[.modificationDate] as? Date
            switch WALArchiveFile(name: name, segmentSize: contents.segmentSize) {
            case .segment(let segment):
                contents.segments.append(segment)
                if let modified, modified > (contents.newestArchivedAt ?? .distantPast) { contents.newestArchivedAt = modified }
            case .partial(let segment):
                contents.partials.append(segment)
                if let modified, modified > (contents.newestArchivedAt ?? .distantPast) { contents.newestArchivedAt = modified }
            case .backupHistory(let segment): contents.backupHistories.append(segment)
            case .timelineHistory(let timeline): contents.historyTimelines.append(timeline)
            case .other: break
            }
        }
        // A segment archived before compression and again after (or both forms left by a
        // copy) counts once.
        contents.segments = Set(contents.segments).sorted()
        contents.partials = Set(contents.partials).sorted()
        contents.backupHistories = Set(contents.backupHistories).sorted()
        contents.historyTimelines = Set(contents.historyTimelines).sorted()
        return contents
    }

    /// The uncompressed size gzip recorded in the last 4 bytes of the file at `path` (modulo
    /// 4 GiB, little-endian); nil when it cannot be read.
    static func gzipUncompressedSize(_ path: String) -> UInt64? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let end = try? handle.seekToEnd(), end >= 18 else { return nil }
        guard (try? handle.seek(toOffset: end - 4)) != nil, let bytes = try? handle.read(upToCount: 4), bytes.count == 4 else { return nil }
        return bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// The most missing segments ``gaps(in:from:to:)`` names (a stray file name far ahead
    /// would otherwise make it list, and hold, billions).
    public static let maxNamedGaps = 10_000

    /// The segments missing between `start` and `end` (both included) when `present` are
    /// the archived complete segments: every position must be held by a segment of some
    /// timeline (a promotion continues the same positions on a new timeline). Each missing
    /// position is named on the timeline of the nearest archived segment before it; at most
    /// ``maxNamedGaps`` are named. The work is bounded by the segments present, not the span.
    public static func gaps(in present: [WALSegment], from start: WALSegment, to end: WALSegment) -> [WALSegment] {
        guard start.position <= end.position else { return [] }
        var timelineAt: [UInt64: UInt32] = [:]
        for segment in present where segment.position >= start.position && segment.position <= end.position {
            timelineAt[segment.position] = max(timelineAt[segment.position] ?? 0, segment.timeline)
        }
        var missing: [WALSegment] = []
        var timeline = start.timeline
        var next = start.position
        func name(upTo last: UInt64) {
            var position = next
            while position <= last && missing.count < maxNamedGaps {
                missing.append(WALSegment(timeline: timeline, position: position, segmentSize: start.segmentSize))
                position += 1
            }
        }
        for (position, found) in timelineAt.sorted(by: { $0.key < $1.key }) {
            if position > next { name(upTo: position - 1) }
            timeline = found
            next = position + 1
        }
        if next <= end.position { name(upTo: end.position) }
        return missing
    }
}
