import Foundation
import MeltyPostgres
import MeltyTestServices
import Testing

@testable import RealtimeCore

/// VisibilityCheck against real policies: each user sees only their rows, anon none, a
/// revoked column never, a DELETE only its key; claims that break a policy isolate their
/// audience; 1,000 audiences cost one round trip per 500, measured.
@Suite("Realtime changes: row-level security per audience", .serialized, .timeLimit(.minutes(3)))
struct ChangesVisibilityTests {
    static let userA = "0b7d1f0e-0000-4000-8000-00000000000a"
    static let userB = "0b7d1f0e-0000-4000-8000-00000000000b"

    static func noteChange(_ type: RowChange.Kind, id: String, owner: String?) -> RowChange {
        let columns: [RowChange.Column] = [
            .init(name: "id", type: "int8"), .init(name: "owner", type: "uuid"), .init(name: "body", type: "text"), .init(name: "secret", type: "text"),
        ]
        let row: [RowChange.Field] = [.init(name: "id", text: id), .init(name: "owner", text: owner), .init(name: "body", text: "b"), .init(name: "secret", text: "s")]
        return RowChange(
            schema: "public", table: "notes", type: type, commitTimestamp: "2026-01-02T03:04:05.678Z", columns: columns, primaryKey: ["id"],
            record: type == .delete ? [] : row, oldRecord: type == .insert ? [] : (type == .delete ? row : []))
    }

    @Test("users see only their rows, anon none, service_role all; the revoked column never appears; a DELETE carries only its key")
    func perAudience() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let connection = try await TestServices.connect(conninfo)
        defer { connection.close() }
        try await connection.query("INSERT INTO notes (id, owner, body, secret) VALUES (1, $1, 'a', 's'), (2, $2, 'b', 's')", [Self.userA, Self.userB])
        let batch = [
            Self.noteChange(.insert, id: "1", owner: Self.userA), Self.noteChange(.insert, id: "2", owner: Self.userB),
            Self.noteChange(.update, id: "1", owner: Self.userA), Self.noteChange(.delete, id: "9", owner: Self.userB),
        ]
        let a = Audience(role: "authenticated", claims: ChangesTestDatabase.claims(Self.userA))
        let b = Audience(role: "authenticated", claims: ChangesTestDatabase.claims(Self.userB))
        let anon = Audience(role: "anon", claims: #"{"role":"anon"}"#)
        let service = Audience(role: "service_role", claims: #"{"role":"service_role"}"#)
        let broken = Audience(role: "authenticated", claims: #"{"sub":"not-a-uuid"}"#)
        let outsider = Audience(role: "meltybase", claims: "{}")
        let check = VisibilityCheck()
        let result = try await check.visibility(of: batch, for: [a, b, anon, service, broken, outsider, a], on: connection)
        #expect(result.count == 6)
        #expect(result[a]?.changes == [0, 2, 3])
        #expect(result[b]?.changes == [1, 3])
        #expect(result[anon]?.changes == [3])
        #expect(result[service]?.changes == [0, 1, 2, 3])
        #expect(result[broken]?.changes == [3])
        #expect(result[outsider]?.changes == [])
        let forA = try #require(result[a])
        #expect(!forA.columns.contains("secret") && forA.columns.contains("owner"))
        #expect(forA.oldRecordKeyOnly)
        for index in forA.changes {
            #expect(!String(decoding: forA.dataJSON(batch[index]), as: UTF8.self).contains("secret"))
        }
        #expect(String(decoding: forA.dataJSON(batch[3]), as: UTF8.self).contains(#""old_record":{"id":9}"#))
        let forService = try #require(result[service])
        #expect(forService.columns.contains("secret") && !forService.oldRecordKeyOnly)
        #expect(String(decoding: forService.dataJSON(batch[0]), as: UTF8.self).contains(#""secret":"s""#))

        // Privileges are cached until reset(): a GRANT shows after reset.
        try await connection.execute("GRANT SELECT (secret) ON notes TO authenticated")
        #expect(try await check.visibility(of: batch, for: [a], on: connection)[a]?.columns.contains("secret") == false)
        check.reset()
        #expect(try await check.visibility(of: batch, for: [a], on: connection)[a]?.columns.contains("secret") == true)
    }

    @Test("a committed transaction shows in a snapshot once it is no longer running, across the 32-bit xid wraparound")
    func transactionSnapshots() throws {
        let snapshot = try #require(TransactionSnapshot("1000:1010:1003,1007"))
        #expect(snapshot.sees(999) && snapshot.sees(1004) && snapshot.sees(1009))
        #expect(!snapshot.sees(1003) && !snapshot.sees(1007))
        // Epoch 1: xid 5 is 2^32 + 5; xid 4294967290 belongs to epoch 0 (before xmax's epoch).
        let wrapped = try #require(TransactionSnapshot("4294967290:4294967310:4294967301,4294967292"))
        #expect(wrapped.sees(3) && !wrapped.sees(5))
        #expect(wrapped.sees(4_294_967_291) && !wrapped.sees(4_294_967_292))
        for bad in ["", "1:2", "a:b:", "5:3:", "1:9:x"] { #expect(TransactionSnapshot(bad) == nil, "\(bad)") }
        #expect(TransactionSnapshot("7:7:") == TransactionSnapshot("7:7:"))
    }

    @Test("the change feed waits for a committed transaction to show before re-selecting its rows")
    func waitsForCommittedTransactions() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let connection = try await TestServices.connect(conninfo)
        defer { connection.close() }
        let writer = try await TestServices.connect(conninfo)
        defer { writer.close() }
        // A transaction still open is not visible: the check waits for it, then sees its row.
        try await writer.execute("BEGIN")
        try await writer.query("INSERT INTO notes (id, owner, body, secret) VALUES (40, $1, 'late', 's')", [Self.userA])
        let xid = try #require(UInt32(try await writer.query("SELECT (txid_current() % 4294967296)::text").scalar ?? ""))
        var change = Self.noteChange(.insert, id: "40", owner: Self.userA)
        change.transactionID = xid
        let a = Audience(role: "authenticated", claims: ChangesTestDatabase.claims(Self.userA))
        let check = VisibilityCheck()
        async let judged = check.visibility(of: [change], for: [a], on: connection)
        try await Task.sleep(for: .milliseconds(300))
        try await writer.execute("COMMIT")
        #expect(try await judged[a]?.changes == [0], "the row committed while the check waited was judged invisible")
    }

    @Test("with the changes each audience matched, only those keys are re-selected for it, and it sees only them")
    func relevantKeysOnly() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let connection = try await TestServices.connect(conninfo)
        defer { connection.close() }
        try await connection.query("INSERT INTO notes (id, owner, body, secret) VALUES (1, $1, 'a', 's'), (2, $2, 'b', 's'), (3, $1, 'c', 's')", [Self.userA, Self.userB])
        let batch = [
            Self.noteChange(.insert, id: "1", owner: Self.userA), Self.noteChange(.insert, id: "2", owner: Self.userB),
            Self.noteChange(.insert, id: "3", owner: Self.userA),
        ]
        let a = Audience(role: "authenticated", claims: ChangesTestDatabase.claims(Self.userA))
        let b = Audience(role: "authenticated", claims: ChangesTestDatabase.claims(Self.userB))
        let service = Audience(role: "service_role", claims: #"{"role":"service_role"}"#)
        let check = VisibilityCheck()
        // a matched rows 1 and 2 (only 1 is its own), b matched row 3 (a's): b sees nothing;
        // service_role (no RLS for it) is not re-selected and keeps every change.
        let result = try await check.visibility(of: batch, for: [a, b, service], relevant: [a: [0, 1], b: [2]], on: connection)
        #expect(result[a]?.changes == [0])
        #expect(result[b]?.changes == [])
        #expect(result[service]?.changes == [0, 1, 2])
        // Without `relevant`, the same audiences are asked about every key.
        let all = try await check.visibility(of: batch, for: [a, b], on: connection)
        #expect(all[a]?.changes == [0, 2])
        #expect(all[b]?.changes == [1])
    }

    @Test("a (select auth.uid()) policy, composite keys and a table without RLS are judged per audience")
    func initPlanPolicyAndOpenTable() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let connection = try await TestServices.connect(conninfo)
        defer { connection.close() }
        let users = (0..<20).map { String(format: "0b7d1f0e-0000-4000-8000-%012d", $0) }
        for (index, user) in users.enumerated() {
            try await connection.query("INSERT INTO cards VALUES ($1, $2, 't')", [String(format: "1b7d1f0e-0000-4000-8000-%012d", index), user])
        }
        let columns: [RowChange.Column] = [.init(name: "id", type: "uuid"), .init(name: "owner", type: "uuid"), .init(name: "title", type: "text")]
        let batch = users.enumerated().map { index, user in
            RowChange(
                schema: "public", table: "cards", type: .insert, commitTimestamp: "", columns: columns, primaryKey: ["id"],
                record: [.init(name: "id", text: String(format: "1B7D1F0E-0000-4000-8000-%012d", index).lowercased()), .init(name: "owner", text: user)],
                oldRecord: [])
        }
        let audiences = users.map { Audience(role: "authenticated", claims: ChangesTestDatabase.claims($0)) }
        let result = try await VisibilityCheck().visibility(of: batch, for: audiences, on: connection)
        for (index, audience) in audiences.enumerated() { #expect(result[audience]?.changes == [index]) }

        try await connection.query("INSERT INTO open_items VALUES (1, 'x,y', 'v')")
        let open = RowChange(
            schema: "public", table: "open_items", type: .update, commitTimestamp: "", columns: [.init(name: "a", type: "int4"), .init(name: "b", type: "text")],
            primaryKey: ["a", "b"], record: [.init(name: "a", text: "1"), .init(name: "b", text: "x,y")], oldRecord: [])
        let anon = Audience(role: "anon", claims: "{}")
        #expect(try await VisibilityCheck().visibility(of: [open], for: [anon], on: connection)[anon]?.changes == [0])
    }

    @Test("why audiences are not grouped into one statement: with a (select auth.uid()) policy every audience gets the first one's rows")
    func groupedStatementIsWrongForInitPlans() async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let connection = try await TestServices.connect(conninfo)
        defer { connection.close() }
        let users = (0..<5).map { String(format: "0b7d1f0e-0000-4000-8000-%012d", $0) }
        for (index, user) in users.enumerated() {
            try await connection.query("INSERT INTO cards VALUES ($1, $2, 't')", [String(format: "1b7d1f0e-0000-4000-8000-%012d", index), user])
            try await connection.query("INSERT INTO notes (id, owner) VALUES ($1, $2)", [String(index), user])
        }
        let claims = "{" + users.map { "\"" + #"{\"sub\":\""# + $0 + #"\"}"# + "\"" }.joined(separator: ",") + "}"
        /// Per audience (ordinal), the owners of the rows the grouped statement returned.
        func grouped(_ table: String) async throws -> [[String?]] {
            let sql = """
                SELECT a.n::text, t.owner::text FROM unnest($1::text[]) WITH ORDINALITY AS a(claims, n)
                CROSS JOIN LATERAL (SELECT set_config('request.jwt.claims', a.claims, true) AS c) s
                CROSS JOIN LATERAL (SELECT owner FROM public.\(table) WHERE s.c IS NOT NULL OFFSET 0) t ORDER BY a.n
                """
            let results = try await connection.pipeline([("BEGIN READ ONLY", []), ("SELECT set_config('role', 'authenticated', true)", []), (sql, [claims]), ("COMMIT", [])])
            return results[2].rows
        }
        let expected = users.enumerated().map { [String($0.offset + 1), $0.element] }
        // owner = auth.uid() is evaluated per row: right.
        #expect(try await grouped("notes") == expected)
        // owner = (select auth.uid()) is an InitPlan, run once: every audience sees user 0's row.
        let initPlan = try await grouped("cards")
        #expect(initPlan != expected)
        #expect(initPlan.allSatisfy { $0[1] == users[0] })
    }

    @Test("1,000 distinct audiences: one pipelined round trip per 500, each sees exactly its rows (throughput printed)", arguments: [1, 100])
    func thousandAudiences(rowsPerBatch: Int) async throws {
        let conninfo = try await ChangesTestDatabase.make()
        let connection = try await TestServices.connect(conninfo)
        defer { connection.close() }
        let audienceCount = 1_000
        let users = (0..<audienceCount).map { String(format: "0b7d1f0e-0000-4000-8000-%012d", $0) }
        try await connection.query(
            "INSERT INTO notes (id, owner, body) SELECT g, ('0b7d1f0e-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'row' FROM generate_series(0, $1::int - 1) g",
            [String(audienceCount)])
        let batch = (0..<rowsPerBatch).map { Self.noteChange(.update, id: String($0 * 10), owner: users[$0 * 10]) }
        let audiences = users.map { Audience(role: "authenticated", claims: ChangesTestDatabase.claims($0)) }
        let check = VisibilityCheck()
        _ = try await check.visibility(of: batch, for: [audiences[0]], on: connection)  // caches warm
        let before = check.counters
        let started = ContinuousClock.now
        let rounds = 5
        var result: [Audience: Visibility] = [:]
        for _ in 0..<rounds { result = try await check.visibility(of: batch, for: audiences, on: connection) }
        let elapsed = ContinuousClock.now - started
        let after = check.counters
        for (index, audience) in audiences.enumerated() {
            #expect(result[audience]?.changes == (index % 10 == 0 && index / 10 < rowsPerBatch ? [index / 10] : []))
        }
        #expect(after.roundTrips - before.roundTrips == rounds * 2)
        #expect(after.statements - before.statements == rounds * (2 * audienceCount + 4))
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let statements = Double(after.statements - before.statements)
        print(
            "visibility: \(audienceCount) audiences × \(rowsPerBatch) changed rows, \(rounds) batches in \(String(format: "%.3f", seconds)) s: "
                + "\(Int(statements / seconds)) statements/s, \(Int(Double(rounds * audienceCount) / seconds)) audience checks/s, "
                + "\(Int(Double(rounds * audienceCount * rowsPerBatch) / seconds)) (row, audience) decisions/s")
    }
}
