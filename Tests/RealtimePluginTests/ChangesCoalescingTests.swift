import Foundation
import MeltyPostgres
import MeltyTestServices
import Synchronization
import Testing

@testable import RealtimeCore

/// Transactions that arrive while the handler is busy are handed over together (whole
/// transactions, in commit order, up to `maxChangesPerCall`), and none is lost.
@Suite("Realtime changes: transactions gathered per call", .serialized, .timeLimit(.minutes(3)))
struct ChangesCoalescingTests {
    @Test("a slow handler gets the transactions committed meanwhile in fewer calls, in order, none lost")
    func gathersWaitingTransactions() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let sql = try await TestServices.connect(conninfo)
        defer { sql.close() }
        let slot = ChangesFeedTests.uniqueSlot()
        let collector = ChangesCollector()
        let feed = ChangeFeed(
            loop: TestServices.loop, options: ChangeFeed.Options(leaderRetry: .milliseconds(100), backoff: [.milliseconds(100)], maxChangesPerCall: 25))
        try await ChangesFeedTests.stopping([feed]) {
            feed.start(conninfo: conninfo, slot: slot) { batch in
                await collector.add(batch)
                try? await Task.sleep(for: .milliseconds(200))  // a slow delivery: more commits pile up
            }
            try await ChangesFeedTests.waitUntilStreaming(feed, slot: slot, on: sql)
            for id in 1...60 {
                try await sql.query(
                    "INSERT INTO cards (id, owner, title) VALUES ($1::uuid, $1::uuid, $2)", [String(format: "00000000-0000-4000-8000-%012d", id), "t\(id)"])
            }
            let changes = await collector.waitFor(changes: 60)
            let titles = changes.compactMap { change in change.record.first { $0.name == "title" }?.text }
            #expect(titles == (1...60).map { "t\($0)" })
            let sizes = await collector.batches.map(\.count)
            #expect(sizes.count < 60, "transactions waiting should be gathered, got \(sizes)")
            #expect(sizes.allSatisfy { $0 <= 25 })
            // The count moves once the last call returned.
            for _ in 0..<100 where feed.deliveredTransactions < 60 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(feed.deliveredTransactions == 60)
            await feed.stop()
        }
    }
}
