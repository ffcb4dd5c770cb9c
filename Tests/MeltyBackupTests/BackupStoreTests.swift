import Foundation
import Testing

@testable import MeltyBackup

@Suite("the backup folder: metadata, incomplete backups, pending audit entries, backup_label")
struct BackupStoreTests {
    func temporaryStore() throws -> BackupStore {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("backups-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + "/base", withIntermediateDirectories: true)
        return BackupStore(root: root)
    }

    func backup(_ name: String, start: Date) -> BaseBackup {
        BaseBackup(
            name: name, startTime: start, endTime: start.addingTimeInterval(2.5), startLSN: "0/2000028", endLSN: "0/2000100",
            startWAL: "000000010000000000000002", endWAL: "000000010000000000000002", timeline: 1, sizeBytes: 42, trigger: "manual")
    }

    @Test("saved metadata lists newest first; incomplete backups are ignored, then removed")
    func listAndClean() throws {
        let store = try temporaryStore()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let now = Date(timeIntervalSince1970: 1_796_518_923.25)
        for (index, name) in ["a", "b"].enumerated() {
            try FileManager.default.createDirectory(atPath: store.path(of: name), withIntermediateDirectories: true)
            try store.save(backup(name, start: now.addingTimeInterval(Double(index) * 60)))
        }
        for leftover in ["c.partial", "d"] { try FileManager.default.createDirectory(atPath: store.path(of: leftover), withIntermediateDirectories: true) }
        let listed = try store.list()
        #expect(listed.map(\.name) == ["b", "a"])
        #expect(listed.last == backup("a", start: now))
        store.removeIncomplete()
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.baseDirectory).sorted() == ["a", "a.json", "b", "b.json"])
        #expect(store.newName(at: now) == "20261206T010203Z")
    }

    @Test("pending audit entries are written in order; a failure keeps the rest for later")
    func pendingAudit() async throws {
        let store = try temporaryStore()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let pending = PendingAudit(root: store.root)
        for action in ["one", "two", "three"] { try pending.add(PendingAudit.Entry(actor: "cli", action: action, target: "x", details: [:])) }
        struct Refused: Error {}
        let written = Written()
        await #expect(throws: Refused.self) {
            try await pending.flush { entry in
                if entry.action == "two" { throw Refused() }
                written.add(entry.action)
            }
        }
        #expect(pending.entries().map(\.action) == ["two", "three"])
        try await pending.flush { written.add($0.action) }
        #expect(written.actions == ["one", "two", "three"])
        #expect(pending.entries().isEmpty && !FileManager.default.fileExists(atPath: pending.path))
    }

    @Test("an entry appended while a flush runs is kept, after the entries the flush could not write")
    func pendingAuditAppendDuringFlush() async throws {
        let store = try temporaryStore()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let pending = PendingAudit(root: store.root)
        for action in ["one", "two"] { try pending.add(PendingAudit.Entry(actor: "kernel", action: action, target: "x", details: [:])) }
        struct Refused: Error {}
        let written = Written()
        await #expect(throws: Refused.self) {
            try await pending.flush { entry in
                // The CLI appends while the kernel writes "one"; then "two" fails.
                if entry.action == "one" { try pending.add(PendingAudit.Entry(actor: "cli", action: "late", target: "y", details: [:])) }
                if entry.action == "two" { throw Refused() }
                written.add(entry.action)
            }
        }
        #expect(pending.entries().map(\.action) == ["two", "late"])
        try await pending.flush { entry in
            if entry.action == "two" { try pending.add(PendingAudit.Entry(actor: "cli", action: "later", target: "z", details: [:])) }
            written.add(entry.action)
        }
        #expect(written.actions == ["one", "two", "late"])
        #expect(pending.entries().map(\.action) == ["later"])
    }

    @Test("backup_label gives the start LSN, WAL file, time and timeline")
    func label() throws {
        let text = """
            START WAL LOCATION: 0/5000028 (file 000000020000000000000005)
            CHECKPOINT LOCATION: 0/5000060
            BACKUP METHOD: streamed
            BACKUP FROM: primary
            START TIME: 2026-12-06 01:02:03 UTC
            LABEL: meltybase 20261206T010203Z
            START TIMELINE: 2

            """
        let label = try BackupLabel(text: text)
        #expect(label.startLSN == 0x500_0028 && label.startWAL == "000000020000000000000005" && label.timeline == 2)
        #expect(label.startTime == RecoveryTarget.parse("2026-12-06T01:02:03Z"))
        #expect(throws: BackupError.self) { try BackupLabel(text: "LABEL: x\n") }
    }
}

/// Actions a flush wrote, from a `@Sendable` closure.
final class Written: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ action: String) { lock.withLock { list.append(action) } }
    var actions: [String] { lock.withLock { list } }
}
