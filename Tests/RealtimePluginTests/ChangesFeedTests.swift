import Foundation
import MeltyJSON
import MeltyPostgres
import MeltyTestServices
import Testing

@testable import RealtimeCore

/// ChangeFeed against the test Postgres: transactions arrive whole with Supabase's JSON
/// values, a restarted feed resumes at the confirmed position, and of two feeds on one slot
/// exactly one streams until it stops.
@Suite("Realtime changes: the change feed", .serialized, .timeLimit(.minutes(3)))
struct ChangesFeedTests {
    let options = ChangeFeed.Options(leaderRetry: .milliseconds(100), backoff: [.milliseconds(100), .milliseconds(200)])

    /// Runs `body`, stopping `feeds` when it fails (a feed left streaming would keep the test
    /// Postgres from shutting down at exit).
    static func stopping(_ feeds: [ChangeFeed], _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            for feed in feeds { await feed.stop() }
            throw error
        }
    }

    static func uniqueSlot() -> String { "test_rt_" + UUID().uuidString.prefix(8).lowercased() }

    /// Waits until `feed` streams (changes committed after it are captured). While the slot is
    /// being created it is already active, but changes before its consistent point are not
    /// in it: waiting for the slot alone loses them.
    static func waitUntilStreaming(_ feed: ChangeFeed, slot: String, on connection: PostgresConnection) async throws {
        for _ in 0..<400 {
            if feed.phase == .streaming { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("the feed did not start streaming: \(feed.phase)")
    }

    static func confirmedLSN(_ slot: String, on connection: PostgresConnection) async throws -> LSN {
        LSN(try await connection.query("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", [slot]).scalar ?? "") ?? .zero
    }

    @Test("INSERT, UPDATE and DELETE arrive one batch per transaction with Supabase's values; a restart resumes after the confirmed position")
    func streamsAndResumes() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let sql = try await TestServices.connect(conninfo)
        defer { sql.close() }
        let slot = Self.uniqueSlot()
        let collector = ChangesCollector()
        let feed = ChangeFeed(loop: TestServices.loop, options: options)
        let restarted = ChangeFeed(loop: TestServices.loop, options: options)
        try await Self.stopping([feed, restarted]) {
            feed.start(conninfo: conninfo, slot: slot) { await collector.add($0) }
            try await Self.waitUntilStreaming(feed, slot: slot, on: sql)

            let owner = "0b7d1f0e-0000-4000-8000-000000000001"
            try await sql.execute(
                """
                BEGIN;
                INSERT INTO notes (id, owner, amount, meta, body, flag, secret) VALUES
                  (9007199254740993, '\(owner)', 12345678901234567890.123456789, '{"a": [1, {"b": "c"}]}', 'he said "hi" \\ ünï 😀', true, NULL),
                  (2, '\(owner)', -0.5, 'null', '', false, 's');
                COMMIT;
                """)
            try await sql.query("UPDATE notes SET body = $1 WHERE id = 2", ["changed"])
            // Other tests write WAL too: the DELETE's commit ends after this position.
            let beforeDelete = LSN(try await sql.query("SELECT pg_current_wal_insert_lsn()::text").scalar ?? "") ?? .zero
            try await sql.query("DELETE FROM notes WHERE id = 2")
            let changes = await collector.waitFor(changes: 4)
            if changes.count < 4 {
                await feed.stop()
                Issue.record("only \(changes.count) changes arrived; the feed is \(feed.phase)")
                return
            }
            #expect(await collector.batches.map(\.count) == [2, 1, 1])
            #expect(changes.map(\.type) == [.insert, .insert, .update, .delete])
            let insert = try #require(changes.first)
            #expect(insert.schema == "public" && insert.table == "notes" && insert.primaryKey == ["id"])
            #expect(insert.columns.map(\.type) == ["int8", "uuid", "numeric", "jsonb", "text", "bool", "text", "timestamptz"])
            #expect(insert.commitTimestamp.count == 24 && insert.commitTimestamp.hasSuffix("Z"))
            let json = String(decoding: insert.dataJSON(), as: UTF8.self)
            #expect(json.contains(#""id":9007199254740993"#))
            #expect(json.contains(#""amount":12345678901234567890.123456789"#))
            #expect(json.contains(#""meta":{"a": [1, {"b": "c"}]}"#))
            #expect(json.contains(#""flag":true"#))
            #expect(json.contains(#""secret":null"#))
            let record = try #require(JSONValue(json: Array(json.utf8))?.objectValue?["record"]?.objectValue)
            #expect(record["body"] == "he said \"hi\" \\ ünï 😀")
            #expect(record["owner"] == .string(owner))
            // Default replica identity: the DELETE's old_record holds the key only.
            let delete = try #require(changes.last)
            #expect(delete.oldRecord == [RowChange.Field(name: "id", text: "2")])
            #expect(delete.record.isEmpty)
            #expect(String(decoding: delete.dataJSON(), as: UTF8.self).contains(#""record":{},"old_record":{"id":2}"#))
            // The last commit is acknowledged once the handler returned.
            var confirmed = LSN.zero
            for _ in 0..<200 where confirmed <= beforeDelete {
                confirmed = try await Self.confirmedLSN(slot, on: sql)
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(confirmed > beforeDelete)
            await feed.stop()
            #expect(!feed.isLeader)

            // Committed while nobody streams: the next feed delivers it, and only it.
            try await sql.query("INSERT INTO notes (id, owner, body) VALUES (3, $1, 'while stopped')", [owner])
            let again = ChangesCollector()
            restarted.start(conninfo: conninfo, slot: slot) { await again.add($0) }
            let resumed = await again.waitFor(changes: 1)
            #expect(resumed.map(\.type) == [.insert])
            #expect(resumed.first?.record.first?.text == "3")
            try await sql.query("UPDATE notes SET body = 'after restart' WHERE id = 3")
            let more = await again.waitFor(changes: 2)
            #expect(more.count == 2 && more.last?.type == .update)
            await restarted.stop()
            try await ChangeFeed.dropSlot(slot, conninfo: conninfo, loop: TestServices.loop)
            #expect(try await sql.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]).rows.isEmpty)
        }
    }

    @Test("of two feeds on one slot only one streams; the other takes over when it stops and loses no committed row")
    func leadershipTakeover() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let sql = try await TestServices.connect(conninfo)
        defer { sql.close() }
        let slot = Self.uniqueSlot()
        let first = ChangeFeed(loop: TestServices.loop, options: options)
        let second = ChangeFeed(loop: TestServices.loop, options: options)
        let firstSeen = ChangesCollector()
        let secondSeen = ChangesCollector()
        try await Self.stopping([first, second]) {
            first.start(conninfo: conninfo, slot: slot) { await firstSeen.add($0) }
            try await Self.waitUntilStreaming(first, slot: slot, on: sql)
            second.start(conninfo: conninfo, slot: slot) { await secondSeen.add($0) }
            try await Task.sleep(for: .milliseconds(400))
            #expect(first.isLeader)
            #expect(second.phase == .following)

            for id in 1...5 { try await sql.query("INSERT INTO open_items VALUES ($1, 'x', 'v')", [String(id)]) }
            #expect(await firstSeen.waitFor(changes: 5).count == 5)
            #expect(await secondSeen.changes.isEmpty)

            // Rows keep coming while the leader goes away; the follower must deliver every one
            // the leader did not (at least once: a row may arrive twice, none may be missing).
            let writer = Task {
                for id in 6...40 {
                    try await sql.query("INSERT INTO open_items VALUES ($1, 'x', 'v')", [String(id)])
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            try await Task.sleep(for: .milliseconds(100))
            await first.stop()
            try await writer.value
            let taken = await secondSeen.waitFor(changes: 1)
            #expect(!taken.isEmpty)
            #expect(second.isLeader)
            func ids(_ changes: [RowChange]) -> Set<String> { Set(changes.compactMap { $0.record.first?.text }) }
            var union = Set<String>()
            for _ in 0..<400 {
                union = ids(await firstSeen.changes).union(ids(await secondSeen.changes))
                if union.count == 40 { break }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(union == Set((1...40).map(String.init)))
            await second.stop()
            try await ChangeFeed.dropSlot(slot, conninfo: conninfo, loop: TestServices.loop)
        }
    }

    @Test("a transaction whose handler was cut short by stop() is not acknowledged: the next feed delivers it again")
    func unfinishedHandlerIsRedelivered() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let sql = try await TestServices.connect(conninfo)
        defer { sql.close() }
        let slot = Self.uniqueSlot()
        let stuck = ChangeFeed(loop: TestServices.loop, options: options)
        let next = ChangeFeed(loop: TestServices.loop, options: options)
        try await Self.stopping([stuck, next]) {
            let entered = ChangesCollector()
            stuck.start(conninfo: conninfo, slot: slot) { batch in
                await entered.add(batch)
                try? await Task.sleep(for: .seconds(120))  // a delivery that never completes; stop() cancels it
            }
            try await Self.waitUntilStreaming(stuck, slot: slot, on: sql)
            try await sql.query("INSERT INTO open_items VALUES (1, 'once', 'v')")
            #expect(await entered.waitFor(changes: 1).count == 1)
            await stuck.stop()
            #expect(stuck.deliveredTransactions == 0)
            let again = ChangesCollector()
            next.start(conninfo: conninfo, slot: slot) { await again.add($0) }
            let redelivered = await again.waitFor(changes: 1)
            #expect(redelivered.first?.record.map(\.text) == ["1", "once", "v"])
            await next.stop()
            #expect(next.deliveredTransactions == 1)
            try await ChangeFeed.dropSlot(slot, conninfo: conninfo, loop: TestServices.loop)
        }
    }

    @Test("slot names are valid and bounded; lock keys differ per slot")
    func slotNames() {
        #expect(ChangeFeed.slotName(portal: "Acme-Shop") == "realtime_acme_shop")
        let long = ChangeFeed.slotName(portal: String(repeating: "x", count: 200))
        #expect(long.utf8.count <= 63)
        #expect(ChangeFeed.lockKey(slot: "a") != ChangeFeed.lockKey(slot: "b"))
    }
}
