import Foundation
import MeltyBackup
import Testing

@Suite("WAL segment names, LSNs and archive gaps")
struct WALSegmentTests {
    @Test("a name parses into timeline, log and segment and prints back")
    func roundTrip() throws {
        let segment = try #require(WALSegment(name: "0000000200000001000000FE"))
        #expect(segment.timeline == 2)
        #expect(segment.log == 1)
        #expect(segment.segmentNumber == 0xFE)
        #expect(segment.position == 256 + 0xFE)
        #expect(segment.name == "0000000200000001000000FE")
    }

    @Test("the segment after ...FF is the next log's 00 (16 MiB segments)")
    func nextCrossesLog() throws {
        let last = try #require(WALSegment(name: "0000000100000000000000FF"))
        #expect(last.next.name == "000000010000000100000000")
        let big = try #require(WALSegment(name: "00000001000000000000003F", segmentSize: 64 * 1024 * 1024))
        #expect(big.next.name == "000000010000000100000000")
    }

    @Test("names that are not segments are refused")
    func badNames() {
        #expect(WALSegment(name: "00000001000000000000001") == nil)
        #expect(WALSegment(name: "0000000100000000000000g1") == nil)
        #expect(WALSegment(name: "000000010000000000000100") == nil)  // segment 0x100 > 0xFF
        #expect(WALSegment(name: "000000000000000000000001") == nil)  // timeline 0
        #expect(WALSegment(name: "00000002.history") == nil)
    }

    @Test("LSNs parse, print and map to their segment")
    func lsn() throws {
        let lsn = try #require(WALSegment.parseLSN("16/B374D848"))
        #expect(lsn == 0x16_B374_D848)
        #expect(WALSegment.formatLSN(lsn) == "16/B374D848")
        #expect(WALSegment(containing: lsn, timeline: 1).name == "0000000100000016000000B3")
        #expect(WALSegment(containing: try #require(WALSegment.parseLSN("0/2000028")), timeline: 1).name == "000000010000000000000002")
        #expect(WALSegment.parseLSN("0/") == nil)
        #expect(WALSegment.parseLSN("x/1") == nil)
        #expect(WALSegment.parseLSN("123456789/0") == nil)
    }

    @Test("archive files are classified: segments, partials, backup and timeline histories")
    func classify() throws {
        let segment = try #require(WALSegment(name: "000000010000000000000003"))
        #expect(WALArchiveFile(name: "000000010000000000000003") == .segment(segment))
        #expect(WALArchiveFile(name: "000000010000000000000003.partial") == .partial(segment))
        #expect(WALArchiveFile(name: "000000010000000000000003.00000028.backup") == .backupHistory(segment))
        #expect(WALArchiveFile(name: "00000002.history") == .timelineHistory(timeline: 2))
        #expect(WALArchiveFile(name: "archtemp.000000010000000000000003.1234.567") == .other)
        #expect(WALArchiveFile(name: "0000000X.history") == .other)
        // Compressed files (the archive command's) are classified as the file they hold.
        #expect(WALArchiveFile(name: "000000010000000000000003.gz") == .segment(segment))
        #expect(WALArchiveFile(name: "000000010000000000000003.partial.gz") == .partial(segment))
        #expect(WALArchiveFile(name: "000000010000000000000003.00000028.backup.gz") == .backupHistory(segment))
        #expect(WALArchiveFile(name: "00000002.history.gz") == .timelineHistory(timeline: 2))
        #expect(WALArchiveFile(name: ".000000010000000000000003.gz.tmp") == .other)
    }

    @Test("a gap names each missing segment; none without one")
    func gaps() throws {
        let names = ["000000010000000000000002", "000000010000000000000003", "000000010000000000000005", "000000010000000000000006"]
        let present = names.compactMap { WALSegment(name: $0) }
        let start = try #require(WALSegment(name: "000000010000000000000002"))
        let end = try #require(WALSegment(name: "000000010000000000000006"))
        #expect(WALArchive.gaps(in: present, from: start, to: end).map(\.name) == ["000000010000000000000004"])
        let whole = present + [try #require(WALSegment(name: "000000010000000000000004"))]
        #expect(WALArchive.gaps(in: whole, from: start, to: end).isEmpty)
    }

    @Test("a stray name far ahead names at most maxNamedGaps segments (no walk over the whole span)")
    func gapsAreBounded() throws {
        let start = try #require(WALSegment(name: "000000010000000000000002"))
        let stray = try #require(WALSegment(name: "00000001FFFFFFFF000000FF"))
        let missing = WALArchive.gaps(in: [start, stray], from: start, to: stray)
        #expect(missing.count == WALArchive.maxNamedGaps)
        #expect(missing.first?.name == "000000010000000000000003")
    }

    @Test("a gap across a log boundary and a timeline switch")
    func gapsAcrossBoundaries() throws {
        let names = ["0000000100000000000000FE", "000000010000000100000000", "000000020000000100000001", "000000020000000100000003"]
        let present = names.compactMap { WALSegment(name: $0) }
        let start = try #require(WALSegment(name: "0000000100000000000000FE"))
        let end = try #require(WALSegment(name: "000000020000000100000003"))
        #expect(WALArchive.gaps(in: present, from: start, to: end).map(\.name) == ["0000000100000000000000FF", "000000020000000100000002"])
    }

    @Test("the archive scan reads segments, partials and histories from a folder")
    func scan() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("wal-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for name in ["000000010000000000000001", "000000010000000000000003", "000000010000000000000002.partial", "00000002.history", "junk"] {
            FileManager.default.createFile(atPath: folder + "/" + name, contents: Data("x".utf8))
        }
        let contents = try WALArchive(directory: folder).scan()
        #expect(contents.segments.map(\.name) == ["000000010000000000000001", "000000010000000000000003"])
        #expect(contents.partials.map(\.name) == ["000000010000000000000002"])
        #expect(contents.historyTimelines == [2])
        #expect(contents.newestArchivedAt != nil)
    }
}

@Suite("backup retention and restore timestamps")
struct RetentionAndTimestampTests {
    func backup(_ name: String, daysAgo: Double, now: Date) -> BaseBackup {
        let time = now.addingTimeInterval(-daysAgo * 86_400)
        return BaseBackup(
            name: name, startTime: time, endTime: time.addingTimeInterval(5), startLSN: "0/2000028", endLSN: "0/2000100",
            startWAL: "000000010000000000000002", endWAL: "000000010000000000000002", timeline: 1, sizeBytes: 1, trigger: "manual")
    }

    @Test("retention keeps the newest keep_count within keep_days, and always the newest")
    func retention() {
        let now = Date()
        let backups = [backup("a", daysAgo: 0, now: now), backup("b", daysAgo: 1, now: now), backup("c", daysAgo: 2, now: now), backup("d", daysAgo: 20, now: now)]
        let (keep, remove) = BackupRetention(keepCount: 3, keepDays: 14).apply(to: backups.shuffled(), now: now)
        #expect(keep.map(\.name) == ["a", "b", "c"])
        #expect(remove.map(\.name) == ["d"])
        let byCount = BackupRetention(keepCount: 2, keepDays: 0).apply(to: backups, now: now)
        #expect(byCount.keep.map(\.name) == ["a", "b"])
        let old = [backup("x", daysAgo: 30, now: now), backup("y", daysAgo: 40, now: now)]
        #expect(BackupRetention(keepCount: 7, keepDays: 14).apply(to: old, now: now).keep.map(\.name) == ["x"])
    }

    @Test("restore targets parse in the accepted forms and refuse others")
    func timestamps() throws {
        let base = try #require(RecoveryTarget.parse("2026-12-06T01:02:03Z"))
        #expect(base.timeIntervalSince1970 == 1_796_518_923)
        #expect(RecoveryTarget.parse("2026-12-06 01:02:03") == base)
        #expect(RecoveryTarget.parse("2026-12-06 02:02:03+01:00") == base)
        #expect(RecoveryTarget.parse("2026-12-06 02:02:03+0100") == base)
        #expect(RecoveryTarget.parse("2026-12-06 01:02:03 UTC") == base)
        #expect(RecoveryTarget.parse("2026-12-06T01:02:03.5Z") == base.addingTimeInterval(0.5))
        #expect(RecoveryTarget.parse("2026-12-06") == RecoveryTarget.parse("2026-12-06T00:00:00Z"))
        for bad in ["yesterday", "2026-02-30 00:00:00", "2026-12-06T25:00:00Z", "2026-12-06T01:02:03+25:00", "", "12/06/2026"] {
            #expect(RecoveryTarget.parse(bad) == nil, "\(bad)")
        }
        #expect(RecoveryTarget.postgres(base.addingTimeInterval(0.25)) == "2026-12-06 01:02:03.250000+00")
        #expect(RecoveryTarget.iso8601(base) == "2026-12-06T01:02:03.000000Z")
    }
}
