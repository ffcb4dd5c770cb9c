import Foundation
import Logging
import MeltyEd25519
import MeltyJSON
import MeltyTestServices
import NIOConcurrencyHelpers
import Testing

@testable import Kernel

/// The hash-chained audit log on a real Postgres: appending (also concurrently and inside
/// a caller's transaction), the append-only triggers, signed checkpoints, and verification
/// against every kind of tampering a superuser can do around the triggers.
@Suite("Audit log: hash chain, append-only triggers, signed checkpoints, verification", .timeLimit(.minutes(3)))
struct AuditChainTests {
    /// A fresh database with the audit schema applied, and a connection to it.
    static func database() async throws -> (conninfo: String, connection: PostgresConnection) {
        let conninfo = try TestServices.freshDatabase()
        let connection = try await TestServices.connect(conninfo)
        try await connection.execute(AuditSchema.sql)
        return (conninfo, connection)
    }

    /// Appends entries `range` (each in its own transaction) with varied details.
    static func fill(_ connection: PostgresConnection, _ range: ClosedRange<Int>) async throws {
        for index in range {
            try await AuditChain.appendCommitting(
                on: connection, actor: index % 2 == 0 ? "admin:ada@example.com" : "plugin:vault",
                action: index % 3 == 0 ? "admin.login.failed" : "secret.read", target: "item-\(index)",
                portal: index % 4 == 0 ? nil : "acme",
                details: try CanonicalJSON(["index": index, "ratio": Double(index) / 7, "tags": ["a", "b"], "ok": index % 2 == 0]))
        }
    }

    /// Runs `sql` as the superuser with triggers off: what an attacker with superuser can do.
    static func tamper(_ conninfo: String, _ sql: String) async throws {
        let connection = try await TestServices.connect(conninfo)
        try await connection.execute("SET session_replication_role = replica;\n" + sql)
    }

    static let instanceKey = Ed25519.generate()

    static func verify(_ connection: PostgresConnection) async throws -> AuditVerification {
        try await AuditChain.verify(on: connection, trustedPublicKey: instanceKey.publicKey, pageSize: 7)
    }

    static func entry(_ connection: PostgresConnection, _ seq: Int64) async throws -> AuditEntry {
        try #require(try await AuditChain.query(on: connection, limit: 1, afterSeq: seq - 1).first)
    }

    // MARK: Definition

    @Test("the hash is SHA-256 over the previous hash, a newline and the canonical entry (golden vector)")
    func hashDefinition() async throws {
        let entry = AuditEntry(
            seq: 1, at: "2025-03-01T09:30:00.123456Z", actor: "admin:ada@example.com", action: "setup.completed",
            target: "ada@example.com", portal: nil,
            details: try CanonicalJSON(["tier": "commercial", "seats": 20, "ratio": 0.5, "note": "é \"q\"\n\u{01}"]),
            prevHash: AuditEntry.genesisHash, hash: "")
        #expect(
            entry.canonicalEntry
                == #"[1,"2025-03-01T09:30:00.123456Z","admin:ada@example.com","setup.completed","ada@example.com",null,{"note":"é \"q\"\n\u0001","ratio":0.5,"seats":20,"tier":"commercial"}]"#
        )
        // Computed independently: python3 hashlib.sha256(("0"*64 + "\n" + canonical).encode())
        #expect(entry.computedHash == "2b78187847fa3341c22857f1895ba103c837822b4581dfc443426fd7c7ff077b")
    }

    @Test("canonical JSON survives a jsonb round trip (the text is recomputed from what Postgres stores)")
    func canonicalJSON() async throws {
        let value = try CanonicalJSON([
            "b": [0.1, 1e-7, 1e300, Double(1 << 60), 3.0, -0.0, 1e19] as [Any],
            "a": [Int64.max, Int64.min, UInt64.max, Int8(-3)] as [Any],
            "é": "\u{1F600}\t\u{1F}/\\", "Z": NSNull(), "z": [String: Any](), "n": NSNumber(value: true),
        ])
        let (_, connection) = try await Self.database()
        let stored = try #require(try await connection.query("SELECT $1::jsonb::text AS t", [value.text]).value("t"))
        #expect(stored != value.text, "jsonb reformats; the canonical form must be recomputed from it")
        #expect(try CanonicalJSON(parsing: stored).text == value.text)
    }

    // MARK: Appending

    @Test("50 entries, 40 of them from four connections at once, form one gap-free chain that verifies")
    func appendConcurrently() async throws {
        let (conninfo, connection) = try await Self.database()
        try await Self.fill(connection, 1...10)
        let failures = NIOLockedValueBox<[String]>([])
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    do {
                        let own = try await TestServices.connect(conninfo)
                        for index in 0..<10 {
                            try await AuditChain.appendCommitting(
                                on: own, actor: "writer-\(writer)", action: "test.concurrent", target: "t\(index)",
                                details: .object(["writer": .integer(Int64(writer)), "index": .integer(Int64(index))]))
                        }
                    } catch {
                        failures.withLockedValue { $0.append("\(error)") }
                    }
                }
            }
        }
        #expect(failures.withLockedValue { $0 } == [])

        let result = try await Self.verify(connection)
        #expect(result.ok, "\(String(describing: result.problem))")
        #expect(result.entries == 50 && result.headSeq == 50)
        var all: [AuditEntry] = []
        while true {
            let page = try await AuditChain.query(on: connection, limit: 20, afterSeq: all.last?.seq ?? 0)
            if page.isEmpty { break }
            all += page
        }
        #expect(all.map(\.seq) == Array(1...50))
        #expect(all.first?.prevHash == AuditEntry.genesisHash)
        #expect(zip(all, all.dropFirst()).allSatisfy { $0.hash == $1.prevHash })
        #expect(all.filter { $0.action == "test.concurrent" }.count == 40)

        let checkpoint = try #require(try await AuditChain.checkpoint(on: connection, signingKey: Self.instanceKey))
        #expect(checkpoint.seq == 50 && checkpoint.headHash == all.last?.hash)
        #expect(try await AuditChain.checkpoint(on: connection, signingKey: Self.instanceKey) == nil, "the head has not moved")
        let again = try await Self.verify(connection)
        #expect(again.ok && again.checkpointsChecked == 1 && again.trustedKey)
    }

    @Test("append joins the caller's transaction: rolled back with it, refused outside one, harmless when it fails")
    func appendInCallersTransaction() async throws {
        let (_, connection) = try await Self.database()
        try await connection.query("CREATE TABLE admins (email text PRIMARY KEY)")

        try await connection.query("BEGIN")
        try await connection.query("INSERT INTO admins VALUES ('ada@example.com')")
        try await AuditChain.append(on: connection, actor: "system", action: "setup.completed", target: "ada@example.com", details: ["tier": "indie"])
        try await connection.query("ROLLBACK")
        #expect(try await AuditChain.head(on: connection) == nil)
        try await connection.query("BEGIN")
        await #expect(throws: AuditError.self) { try await AuditChain.verify(on: connection) }
        try await connection.query("ROLLBACK")

        await #expect(throws: AuditError.self) {
            try await AuditChain.append(on: connection, actor: "system", action: "x", target: "y")
        }

        try await connection.query("BEGIN")
        try await connection.query("INSERT INTO admins VALUES ('ada@example.com')")
        // Postgres text and jsonb cannot hold U+0000: it is stored, and hashed, as U+FFFD, so
        // what verify reads back is what was hashed (a NUL once broke the chain for ever).
        let nul = try await AuditChain.append(on: connection, actor: "system", action: "x", target: "y\u{0}z", details: ["nul": "a\u{0}b"])
        #expect(nul.target == "y\u{FFFD}z" && nul.details == .object(["nul": .string("a\u{FFFD}b")]))
        let entry = try await AuditChain.append(on: connection, actor: "system", action: "setup.completed", target: "ada@example.com", details: ["tier": "indie"])
        try await connection.query("COMMIT")
        #expect(nul.seq == 1 && nul.prevHash == AuditEntry.genesisHash && entry.seq == 2 && entry.prevHash == nul.hash)
        #expect(try await Self.entry(connection, 1) == nul)
        #expect(try await connection.query("SELECT count(*) AS n FROM admins").value("n") == "1")
        let stored = try await Self.entry(connection, 2)
        #expect(stored == entry, "what was hashed is what reads back, time included")
        #expect(entry.at.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"#, options: .regularExpression) != nil)
        #expect(abs(try #require(entry.date).timeIntervalSinceNow) < 60)
        #expect(try await Self.verify(connection).ok)
    }

    @Test("the triggers refuse UPDATE, DELETE and TRUNCATE on entries and checkpoints")
    func appendOnly() async throws {
        let (_, connection) = try await Self.database()
        try await Self.fill(connection, 1...3)
        try await AuditChain.checkpoint(on: connection, signingKey: Self.instanceKey)
        for (statement, operation) in [
            ("UPDATE meltybase.audit_log SET actor = 'mallory' WHERE seq = 2", "UPDATE on meltybase.audit_log"),
            ("DELETE FROM meltybase.audit_log WHERE seq = 3", "DELETE on meltybase.audit_log"),
            ("TRUNCATE meltybase.audit_log CASCADE", "TRUNCATE on meltybase.audit_log"),
            ("UPDATE meltybase.audit_checkpoints SET seq = 99", "UPDATE on meltybase.audit_checkpoints"),
            ("DELETE FROM meltybase.audit_checkpoints", "DELETE on meltybase.audit_checkpoints"),
            ("TRUNCATE meltybase.audit_checkpoints", "TRUNCATE on meltybase.audit_checkpoints"),
        ] {
            let error = await #expect(throws: PostgresError.self) { try await connection.query(statement) }
            #expect(error?.message == "\(operation) refused: the audit log is append-only", "\(statement)")
        }
        #expect(try await Self.verify(connection).ok)
        #expect(try await connection.query("SELECT count(*) AS n FROM meltybase.audit_log").value("n") == "3")
        // Applying the schema again changes nothing.
        try await connection.execute(AuditSchema.sql)
        #expect(try await connection.query("SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE 'audit_%'").value("n") == "4")
    }

    // MARK: Tampering (as the superuser, around the triggers; a fresh database each)

    @Test("a modified field is named")
    func modifiedEntry() async throws {
        let (conninfo, connection) = try await Self.database()
        try await Self.fill(connection, 1...30)
        try await Self.tamper(conninfo, "UPDATE meltybase.audit_log SET actor = 'admin:mallory' WHERE seq = 17")
        let problem = try #require(try await Self.verify(connection).problem)
        #expect(problem.seq == 17)
        #expect(problem.description.contains("entry #17 was modified"))

        let (conninfo2, connection2) = try await Self.database()
        try await Self.fill(connection2, 1...30)
        try await Self.tamper(conninfo2, #"UPDATE meltybase.audit_log SET details = details || '{"index": 4}' WHERE seq = 9"#)
        #expect(try await Self.verify(connection2).problem?.seq == 9)
    }

    @Test("a deleted entry is named")
    func deletedEntry() async throws {
        let (conninfo, connection) = try await Self.database()
        try await Self.fill(connection, 1...30)
        try await Self.tamper(conninfo, "DELETE FROM meltybase.audit_log WHERE seq = 25")
        let result = try await Self.verify(connection)
        #expect(result.problem?.seq == 25)
        #expect(result.problem?.description.contains("entry #25 is missing") == true, "\(String(describing: result.problem))")
        #expect(result.entries == 24)
    }

    @Test("a forged entry with a correct-looking hash, inserted in the middle, is named")
    func insertedEntry() async throws {
        let (conninfo, connection) = try await Self.database()
        try await Self.fill(connection, 1...40)
        let predecessor = try await Self.entry(connection, 30)
        var forged = AuditEntry(
            seq: 31, at: predecessor.at, actor: "admin:ada@example.com", action: "license.replaced", target: "mallory",
            portal: nil, details: .object([:]), prevHash: predecessor.hash, hash: "")
        forged.hash = forged.computedHash
        try await Self.tamper(
            conninfo,
            """
            UPDATE meltybase.audit_log SET seq = seq + 1000000 WHERE seq >= 31;
            UPDATE meltybase.audit_log SET seq = seq - 1000000 + 1 WHERE seq > 1000000;
            INSERT INTO meltybase.audit_log VALUES (31, '\(forged.at)', '\(forged.actor)', '\(forged.action)', '\(forged.target)',
                NULL, '{}', '\(forged.prevHash)', '\(forged.hash)');
            """)
        let problem = try #require(try await Self.verify(connection).problem)
        #expect(problem.seq == 31)
        #expect(problem.description.contains("entry #31 was inserted"), "\(problem)")
    }

    @Test("two entries swapped (reordered) are named")
    func reorderedEntries() async throws {
        let (conninfo, connection) = try await Self.database()
        try await Self.fill(connection, 1...20)
        try await Self.tamper(
            conninfo,
            """
            UPDATE meltybase.audit_log SET seq = 1000000 WHERE seq = 10;
            UPDATE meltybase.audit_log SET seq = 10 WHERE seq = 11;
            UPDATE meltybase.audit_log SET seq = 11 WHERE seq = 1000000;
            """)
        let problem = try #require(try await Self.verify(connection).problem)
        #expect(problem.seq == 10)
        #expect(problem.description.contains("does not link to entry #9"), "\(problem)")
    }

    @Test("entries cut off the end after a checkpoint are detected and named")
    func cutTail() async throws {
        let (conninfo, connection) = try await Self.database()
        try await Self.fill(connection, 1...30)
        try await AuditChain.checkpoint(on: connection, signingKey: Self.instanceKey)
        try await Self.fill(connection, 31...35)
        try await Self.tamper(conninfo, "DELETE FROM meltybase.audit_log WHERE seq > 27")
        let result = try await Self.verify(connection)
        let problem = try #require(result.problem)
        #expect(problem.seq == 28)
        #expect(problem.description.contains("the log ends at entry #27") && problem.description.contains("entries #28-#30 were cut off"), "\(problem)")
        #expect(result.entries == 27)

        // Everything gone: the surviving checkpoint still tells.
        try await Self.tamper(conninfo, "DELETE FROM meltybase.audit_log")
        #expect(try await Self.verify(connection).problem?.seq == 1)
    }

    @Test("a chain rewritten with fresh hashes passes the chain checks but not an earlier checkpoint")
    func rewrittenChain() async throws {
        let (conninfo, connection) = try await Self.database()
        try await Self.fill(connection, 1...20)
        try await AuditChain.checkpoint(on: connection, signingKey: Self.instanceKey)
        try await Self.fill(connection, 21...30)
        var entries = try await AuditChain.query(on: connection, limit: 1000)
        var sql = ""
        for index in 4..<entries.count {
            if index == 4 { entries[index].actor = "admin:mallory" }
            entries[index].prevHash = entries[index - 1].hash
            entries[index].hash = entries[index].computedHash
            sql +=
                "UPDATE meltybase.audit_log SET actor = '\(entries[index].actor)', prev_hash = '\(entries[index].prevHash)', hash = '\(entries[index].hash)' WHERE seq = \(entries[index].seq);\n"
        }
        try await Self.tamper(conninfo, sql)
        let withoutCheckpoints = try await AuditChain.query(on: connection, limit: 1000)
        #expect(zip(withoutCheckpoints, withoutCheckpoints.dropFirst()).allSatisfy { $0.hash == $1.prevHash && $1.computedHash == $1.hash })
        let problem = try #require(try await Self.verify(connection).problem)
        #expect(problem.seq == 20)
        #expect(problem.description.contains("the chain was rewritten at or before this entry"), "\(problem)")
    }

    @Test("a checkpoint with a bad signature, or signed by another key, is detected")
    func badCheckpoints() async throws {
        let (_, connection) = try await Self.database()
        try await Self.fill(connection, 1...12)
        let good = try #require(try await AuditChain.checkpoint(on: connection, signingKey: Self.instanceKey))
        var signature = try #require(ByteEncoding.fromHex(good.signature))
        signature[5] ^= 0x01
        try await connection.query(
            "INSERT INTO meltybase.audit_checkpoints (seq, head_hash, signature, public_key) VALUES (8, $1, $2, $3)",
            [try await Self.entry(connection, 8).hash, ByteEncoding.hex(signature), good.publicKey])
        let problem = try #require(try await Self.verify(connection).problem)
        #expect(problem.seq == 8)
        #expect(problem.description.contains("signature that does not verify with this instance's audit key"), "\(problem)")

        let (_, other) = try await Self.database()
        try await Self.fill(other, 1...12)
        let foreign = Ed25519.generate()
        try await AuditChain.checkpoint(on: other, signingKey: foreign)
        let foreignProblem = try #require(try await Self.verify(other).problem)
        #expect(foreignProblem.seq == 12 && foreignProblem.description.contains("not written by this instance"), "\(foreignProblem)")
        // Without a trusted key only self-consistency can be checked.
        let untrusted = try await AuditChain.verify(on: other)
        #expect(untrusted.ok && !untrusted.trustedKey && untrusted.checkpointsChecked == 1)
    }

    // MARK: Keys, service, queries, sink

    @Test("the signing key is created once with mode 0600, reloaded, published, and refused when readable by others")
    func signingKeyFile() async throws {
        let directory = NSTemporaryDirectory() + "meltybase-audit-key-" + UUID().uuidString.prefix(8)
        let created = try AuditSigningKey.loadOrCreate(directory: directory)
        let path = directory + "/audit-signing.key"
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let again = try AuditSigningKey.loadOrCreate(directory: directory)
        #expect(again.publicKey == created.publicKey && again.secretKey == created.secretKey)
        #expect(try AuditSigningKey.loadPublicKey(directory: directory) == created.publicKey)
        #expect(try String(contentsOfFile: directory + "/audit-signing.pub", encoding: .utf8) == ByteEncoding.hex(created.publicKey) + "\n")

        chmod(path, 0o644)
        let error = #expect(throws: AuditError.self) { try AuditSigningKey.loadOrCreate(directory: directory) }
        #expect(error?.description.contains("has mode 644") == true, "\(String(describing: error))")
        #expect(try AuditSigningKey.loadPublicKey(directory: NSTemporaryDirectory() + "meltybase-none-" + UUID().uuidString) == nil)
    }

    @Test("the checkpoint service signs the head when it moves, and once more at shutdown")
    func checkpointService() async throws {
        let (conninfo, connection) = try await Self.database()
        let database = SystemDatabase(conninfo: conninfo)
        let service = AuditCheckpointService(database: database, signingKey: Self.instanceKey, interval: .milliseconds(100), logger: Logger(label: "test"))
        let running = Task { try await service.run() }
        try await Self.fill(connection, 1...3)
        try await eventually { try await AuditChain.latestCheckpoint(on: connection)?.seq == 3 }
        let count = { try await connection.query("SELECT count(*) AS n FROM meltybase.audit_checkpoints").value("n") }
        let signed = try await count()
        try await Task.sleep(for: .milliseconds(400))
        #expect(try await count() == signed, "the head did not move")
        try await Self.fill(connection, 4...4)
        running.cancel()
        try await running.value
        #expect(try await AuditChain.latestCheckpoint(on: connection)?.seq == 4)
        let result = try await Self.verify(connection)
        #expect(result.ok && result.checkpointsChecked >= 2)
    }

    @Test("query filters by action, actor and time with bound parameters and pages by seq")
    func queryFilters() async throws {
        let (_, connection) = try await Self.database()
        try await Self.fill(connection, 1...12)
        let failed = try await AuditChain.query(on: connection, action: "admin.login.failed")
        #expect(failed.map(\.seq) == [3, 6, 9, 12])
        #expect(try await AuditChain.query(on: connection, actor: "admin:ada@example.com", limit: 3).map(\.seq) == [2, 4, 6])
        #expect(try await AuditChain.query(on: connection, actor: "admin:ada@example.com", limit: 3, afterSeq: 6).map(\.seq) == [8, 10, 12])
        #expect(try await AuditChain.query(on: connection, action: "x' OR '1'='1").isEmpty)
        let sixth = try #require(try await Self.entry(connection, 6).date)
        #expect(try await AuditChain.query(on: connection, since: sixth).map(\.seq) == Array(6...12))
        #expect(try await AuditChain.query(on: connection, until: sixth).map(\.seq) == Array(1...5))
        #expect(try await AuditChain.query(on: connection, limit: 0).count == 1)
        let json = String(decoding: try JSONEncoder().encode(failed[0]), as: UTF8.self)
        #expect(json.contains(#""prev_hash":""#) && json.contains(#""action":"admin.login.failed""#))
    }

    @Test("the plugin audit sink appends canonical details to the chain and refuses non-objects")
    func sink() async throws {
        let (conninfo, connection) = try await Self.database()
        let sink = AuditLogSink(database: SystemDatabase(conninfo: conninfo))
        try sink.append(actor: "plugin:vault", action: "secret.read", target: "stripe_key", portal: "acme", detailsJSON: #"{"b": [1, 2.5, "x"], "a": null}"#)
        try sink.append(actor: "plugin:vault", action: "secret.read", target: "other", portal: nil, detailsJSON: "")
        #expect(throws: AuditError.self) { try sink.append(actor: "p", action: "a", target: "t", portal: nil, detailsJSON: "[1]") }
        #expect(throws: AuditError.self) { try sink.append(actor: "p", action: "a", target: "t", portal: nil, detailsJSON: "{nope") }
        let entries = try await AuditChain.query(on: connection)
        #expect(entries.map(\.details.text) == [#"{"a":null,"b":[1,2.5,"x"]}"#, "{}"])
        #expect(entries.first?.portal == "acme" && entries.last?.portal == nil)
        #expect(try await Self.verify(connection).ok)
    }

    @Test("concurrent plugin audit calls are group-committed: every call returns after its own entry is stored, and the chain verifies")
    func sinkGroupCommit() async throws {
        let (conninfo, connection) = try await Self.database()
        let sink = AuditLogSink(database: SystemDatabase(conninfo: conninfo))
        let failures = NIOLockedValueBox<[String]>([])
        let readBack = NIOLockedValueBox<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 120) { index in
            do {
                try sink.append(actor: "plugin:vault", action: "secret.read", target: "key-\(index)", portal: "acme", detailsJSON: #"{"i": \#(index)}"#)
                // When append returns, the entry is committed: another connection sees it.
                let seen = try BlockingPostgres.run(conninfo) { verifier in
                    try await verifier.query("SELECT count(*)::text AS n FROM meltybase.audit_log WHERE target = $1", ["key-\(index)"]).value("n")
                }
                readBack.withLockedValue { $0.append(Int(seen ?? "0") ?? 0) }
            } catch {
                failures.withLockedValue { $0.append("\(index): \(error)") }
            }
        }
        #expect(failures.withLockedValue { $0 }.isEmpty, "\(failures.withLockedValue { $0 })")
        #expect(readBack.withLockedValue { $0 } == Array(repeating: 1, count: 120))
        let entries = try await AuditChain.query(on: connection, limit: 500)
        #expect(entries.count == 120)
        #expect(Set(entries.map(\.target)).count == 120)
        #expect(entries.map(\.seq).sorted() == Array(1...120))
        #expect(try await Self.verify(connection).ok)
    }

    // MARK: Command line

    @Test("`meltybase audit verify` exits 0 on an intact log and 1 naming the entry after tampering")
    func verifyCommand() async throws {
        let directory = try makeTemporaryDirectory("audit-cli")
        try "[kernel]\nlog_level = \"warning\"\n".write(toFile: directory + "/plugins.toml", atomically: true, encoding: .utf8)
        let data = directory + "/data"
        let key = try AuditSigningKey.loadOrCreate(directory: data)

        func run(_ conninfo: String) throws -> (status: Int32, output: String) {
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MELTYBASE_") }
            environment["MELTYBASE_DATABASE_URL"] = conninfo
            return try runProcess(
                TestPlugins.meltybaseBinary, ["audit", "verify", "--config", directory + "/plugins.toml", "--data-dir", data], environment: environment)
        }

        // A database that never had an audit log: the command creates the tables; empty is intact.
        let empty = try run(try TestServices.freshDatabase())
        #expect(empty.status == 0 && empty.output.contains("audit log OK: 0 entries, 0 checkpoints verified"), "\(empty.output)")

        let (conninfo, connection) = try await Self.database()
        try await Self.fill(connection, 1...5)
        try await AuditChain.checkpoint(on: connection, signingKey: key)
        let intact = try run(conninfo)
        #expect(intact.status == 0, "\(intact.output)")
        #expect(intact.output.contains("audit log OK: 5 entries, 1 checkpoints verified"), "\(intact.output)")

        try await Self.tamper(conninfo, "UPDATE meltybase.audit_log SET target = 'nobody' WHERE seq = 3")
        let broken = try run(conninfo)
        #expect(broken.status == 1, "\(broken.output)")
        #expect(broken.output.contains("audit log BROKEN at entry #3: entry #3 was modified"), "\(broken.output)")
    }
}
