import Foundation
import MeltyPostgres
import MeltyTestServices
import Testing

/// The one Postgres layer against a real Postgres: errors with their fields, pipelines and the
/// prepared-statement bound, no thread per query, cancellation, LISTEN/NOTIFY across an outage,
/// the pool's backpressure, and logical replication that resumes where it was acknowledged.
@Suite("MeltyPostgres: non-blocking libpq, pool, listener, replication", .serialized, .timeLimit(.minutes(3)))
struct MeltyPostgresTests {
    let loop = PostgresEventLoop(name: "test-postgres")

    /// A fresh database on the test Postgres.
    func freshDatabase() async throws -> String {
        let server = try TestServices.start().postgres.conninfo
        let admin = try await PostgresConnection.connect(server, on: loop)
        defer { admin.close() }
        let name = "test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await admin.execute("CREATE DATABASE \(name)")
        return Conninfo.derive(server, overrides: ["dbname": name])
    }

    /// Threads of this process now (/proc/self/task).
    static func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
    }

    @Test("an error carries SQLSTATE, position, detail and hint; a NUL byte is refused before sending")
    func errorFields() async throws {
        let connection = try await PostgresConnection.connect(try await freshDatabase(), on: loop)
        do {
            try await connection.query("SELECT nosuchcolumn FROM pg_class")
            Issue.record("expected an error")
        } catch let error as PostgresError {
            #expect(error.sqlState == "42703")
            #expect(error.position == 8)
        }
        try await connection.execute("CREATE TABLE t (id int PRIMARY KEY)")
        try await connection.query("INSERT INTO t VALUES (1)")
        do {
            try await connection.query("INSERT INTO t VALUES ($1)", ["1"])
            Issue.record("expected a unique violation")
        } catch let error as PostgresError {
            #expect(error.sqlState == "23505")
            #expect(error.detail?.contains("(id)=(1)") == true)
        }
        await #expect(throws: PostgresError.self) { try await connection.query("SELECT $1::text", ["a\u{0}b"]) }
        // The connection is still usable, and typed results come back.
        let rows = try await connection.query("SELECT 42::int4 AS n, 'x'::text AS s, NULL::int AS z")
        #expect(rows.columns == ["n", "s", "z"])
        #expect(rows.types == [23, 25, 23])
        #expect(rows.rows == [["42", "x", nil]])
    }

    @Test("a pipeline runs a transaction in one round trip; a failed step rolls it back; the prepared cache stays bounded")
    func pipelineAndPreparedBound() async throws {
        let connection = try await PostgresConnection.connect(try await freshDatabase(), on: loop)
        try await connection.execute("CREATE TABLE t (id int PRIMARY KEY)")
        let results = try await connection.pipeline([("BEGIN", []), ("INSERT INTO t VALUES ($1) RETURNING id", ["7"]), ("COMMIT", [])])
        #expect(results.count == 3)
        #expect(results[1].scalar == "7")
        await #expect(throws: PostgresError.self) {
            try await connection.pipeline([("BEGIN", []), ("INSERT INTO t VALUES ($1)", ["8"]), ("INSERT INTO t VALUES ($1)", ["7"]), ("COMMIT", [])])
        }
        #expect(!connection.inTransaction)
        #expect(try await connection.query("SELECT count(*) FROM t").scalar == "1")
        for index in 0..<(PostgresConnection.preparedLimit + 40) {
            _ = try await connection.preparedQuery("SELECT \(index) AS n")
        }
        #expect(connection.preparedCount <= PostgresConnection.preparedLimit)
        let onServer = Int(try await connection.query("SELECT count(*) FROM pg_prepared_statements").scalar ?? "") ?? -1
        #expect(onServer <= PostgresConnection.preparedLimit)
        #expect(onServer == connection.preparedCount)
    }

    @Test("100 concurrent queries on a pool of 100 run at once on a handful of threads")
    func noThreadPerQuery() async throws {
        let conninfo = try await freshDatabase()
        let pool = PostgresPool(conninfo: conninfo, size: 100, maxWaiting: 0, loop: loop)
        // Open the connections first: what is watched is the queries, not 100 backends starting.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<100 { group.addTask { _ = try await pool.run { try await $0.query("SELECT pg_sleep(0.05)") } } }
            try await group.waitForAll()
        }
        let idleThreads = Self.threadCount()
        // A connection of its own counts the backends sleeping at once, as the server sees them.
        let monitor = try await PostgresConnection.connect(conninfo, on: loop)
        let watching = Task { () -> Int in
            var most = 0
            while !Task.isCancelled {
                let sleeping = try? await monitor.query(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(1)'")
                most = max(most, Int(sleeping?.scalar ?? "") ?? 0)
                try? await Task.sleep(for: .milliseconds(20))
            }
            return most
        }
        let peak = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<100 {
                group.addTask {
                    try await pool.run { connection in
                        try await connection.query("SELECT pg_sleep(1)")
                        return Self.threadCount()
                    }
                }
            }
            return try await group.reduce(0) { max($0, $1) }
        }
        watching.cancel()
        let concurrent = await watching.value
        monitor.close()
        // Blocking libpq would need a thread per running query: more than 50 extra threads
        // for the 50+ queries seen running at once. The count is process-wide and other
        // suites run beside this one, so the bound leaves room for their threads.
        #expect(concurrent > 50, "at most \(concurrent) of the 100 queries ran at once")
        #expect(peak - idleThreads <= 40, "threads went from \(idleThreads) to \(peak)")
        pool.close()
    }

    @Test("cancelling the task cancels the query in Postgres; the connection serves the next one")
    func cancellation() async throws {
        let conninfo = try await freshDatabase()
        let connection = try await PostgresConnection.connect(conninfo, on: loop)
        let observer = try await PostgresConnection.connect(conninfo, on: loop)
        let pid = String(connection.backendPID)
        let task = Task { try await connection.query("SELECT pg_sleep(30)") }
        // Wait until the sleep runs on the server.
        for _ in 0..<100 {
            if try await observer.query("SELECT state FROM pg_stat_activity WHERE pid = $1", [pid]).scalar == "active" { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        task.cancel()
        let outcome = await task.result
        guard case .failure(let error as PostgresError) = outcome else {
            Issue.record("expected a cancellation error, got \(outcome)")
            return
        }
        #expect(error.isCancellation)
        #expect(try await observer.query("SELECT state FROM pg_stat_activity WHERE pid = $1", [pid]).scalar == "idle")
        #expect(try await connection.query("SELECT 1").scalar == "1")
    }

    @Test("the pool refuses past its queue and hands a freed connection to the next waiter")
    func poolBackpressure() async throws {
        let pool = PostgresPool(conninfo: try await freshDatabase(), size: 1, maxWaiting: 1, loop: loop)
        // The first run holds the only connection until released; no sleep decides the order.
        let (holding, held) = AsyncStream<Void>.makeStream()
        let (released, release) = AsyncStream<Void>.makeStream()
        let first = Task {
            try await pool.run { connection -> String in
                held.yield()
                for await _ in released { break }
                return try await connection.query("SELECT 1").commandTag
            }
        }
        for await _ in holding { break }
        let second = Task { try await pool.run { try await $0.query("SELECT 2").scalar } }
        while pool.counts.waiting < 1 { try await Task.sleep(for: .milliseconds(5)) }
        await #expect(throws: PostgresPoolError.self) { try await pool.run { try await $0.query("SELECT 3").scalar } }
        release.yield()
        #expect(try await first.value == "SELECT 1")
        #expect(try await second.value == "2")
        #expect(pool.counts.busy == 0)
        #expect(pool.counts.idle == 1)
    }

    @Test("the listener delivers notifications and comes back after its backend is terminated")
    func listenerSurvivesOutage() async throws {
        let conninfo = try await freshDatabase()
        let listener = PostgresListener(conninfo: conninfo, channels: ["things"], loop: loop)
        let (events, sink) = AsyncStream<String>.makeStream()
        let task = Task {
            await listener.run { event in
                switch event {
                case .notification(let channel, let payload): sink.yield("\(channel):\(payload)")
                case .listening(let afterOutage): sink.yield(afterOutage ? "relistening" : "listening")
                case .lost: sink.yield("lost")
                }
            }
        }
        var iterator = events.makeAsyncIterator()
        #expect(await iterator.next() == "listening")
        let sender = try await PostgresConnection.connect(conninfo, on: loop)
        try await sender.query("SELECT pg_notify('things', 'one')")
        #expect(await iterator.next() == "things:one")
        try await sender.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"things\"' AND pid <> pg_backend_pid()")
        #expect(await iterator.next() == "lost")
        #expect(await iterator.next() == "relistening")
        try await sender.query("SELECT pg_notify('things', 'two')")
        #expect(await iterator.next() == "things:two")
        task.cancel()
        await task.value
    }

    @Test("logical replication streams inserts, updates and deletes, and resumes after the acknowledged position")
    func replicationResumes() async throws {
        let conninfo = try await freshDatabase()
        let setup = try await PostgresConnection.connect(conninfo, on: loop)
        try await setup.execute(
            """
            CREATE TABLE items (id int PRIMARY KEY, name text);
            ALTER TABLE items REPLICA IDENTITY FULL;
            CREATE PUBLICATION items_pub FOR TABLE items;
            """)
        let slot = "test_slot_" + UUID().uuidString.prefix(8).lowercased()
        try await LogicalReplicationStream.createSlot(slot, conninfo: conninfo, loop: loop)

        try await setup.execute("INSERT INTO items VALUES (1, 'one'); UPDATE items SET name = 'uno' WHERE id = 1")
        try await setup.execute("DELETE FROM items WHERE id = 1")

        func text(_ values: [PgOutputValue]?) -> String {
            (values ?? []).map { value -> String in
                if case .text(let text) = value { return text }
                return value == .null ? "null" : "toast"
            }.joined(separator: ",")
        }
        /// Reads until `commits` transactions ended; returns the changes and the last commit's end.
        func read(_ stream: LogicalReplicationStream, commits: Int) async throws -> ([String], LSN) {
            var changes: [String] = []
            var seen = 0
            var last = LSN.zero
            while seen < commits, let event = try await stream.next() {
                switch event.message {
                case .insert(let relation, let new):
                    changes.append("insert \(stream.relations[relation]?.name ?? "?") \(text(new))")
                case .update(_, let old, let new):
                    changes.append("update \(text(old)) -> \(text(new))")
                case .delete(_, let old):
                    changes.append("delete \(text(old))")
                case .commit(_, let end, _):
                    seen += 1
                    last = end
                default: break
                }
            }
            return (changes, last)
        }

        let stream = try await LogicalReplicationStream.open(conninfo: conninfo, slot: slot, publications: ["items_pub"], loop: loop)
        let (first, end) = try await read(stream, commits: 2)
        #expect(first == ["insert items 1,one", "update 1,one -> 1,uno", "delete 1,uno"])
        try await stream.acknowledge(end)
        // The server records the acknowledgement (status updates are asynchronous: poll).
        var confirmed = LSN.zero
        for _ in 0..<100 {
            confirmed = LSN(try await setup.query("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", [slot]).scalar ?? "") ?? .zero
            if confirmed >= end { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(confirmed >= end)
        stream.close()

        // Written while nobody streams: a reconnect must deliver it, and only it.
        try await setup.execute("INSERT INTO items VALUES (2, 'two')")
        var resumed: LogicalReplicationStream?
        for _ in 0..<100 {
            // The walsender of the closed stream may still hold the slot for a moment.
            do {
                resumed = try await LogicalReplicationStream.open(conninfo: conninfo, slot: slot, publications: ["items_pub"], loop: loop)
                break
            } catch let error as PostgresError where error.sqlState == "55006" {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let again = try #require(resumed)
        let (second, _) = try await read(again, commits: 1)
        #expect(second == ["insert items 2,two"])
        again.close()
        for _ in 0..<100 {
            do {
                try await LogicalReplicationStream.dropSlot(slot, conninfo: conninfo, loop: loop)
                break
            } catch {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}
