import AsyncHTTPClient
import Foundation
import MeltyEd25519
import MeltyLicense
import MeltyPasswords
import MeltyTestServices
import NIOCore
import Testing

@testable import Kernel

/// The seed's onboarding, end to end over HTTP against a real Postgres.
@Suite("Onboarding: pulse, license handshake, Argon2id admin, one-time setup", .serialized, .timeLimit(.minutes(3)))
struct SetupLifecycleTests {
    static let password = "Orbital-Quartz-Lantern-77"

    struct Vendor {
        let keys: Ed25519.KeyPair
        var publicHex: String { ByteEncoding.hex(keys.publicKey) }

        func license(tier: License.Tier = .commercial, seats: Int = 20, expires: Date? = nil, issued: Date = Date()) throws -> String {
            let license = try License(ownerName: "Ada Admin", ownerEmail: "owner@example.com", tier: tier, seats: seats, issuedAt: issued, expiresAt: expires)
            return try LicenseIssuer.sign(license, secretKey: keys.secretKey)
        }
    }

    static func setupBody(_ license: String, email: String = "admin@example.com", password: String = password) -> String {
        let object: [String: Any] = ["license_key": license, "admin": ["email": email, "password": password]]
        return String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    static func start(_ vendor: Vendor, conninfo: String? = nil, keysDirectory: String? = nil) async throws -> TestKernel {
        try await TestKernel.start("[license]\npublic_key = \"\(vendor.publicHex)\"\n", conninfo: conninfo, keysDirectory: keysDirectory)
    }

    @Test("the whole seed lifecycle: locked until a valid license, the closing lines, closed for good across restarts")
    func lifecycle() async throws {
        let vendor = Vendor(keys: Ed25519.generate())
        let kernel = try await Self.start(vendor)
        var status = HTTP.json(try await kernel.request("/v1/system/status").body)
        #expect(status["is_initialized"] as? Bool == false)

        let valid = try vendor.license()
        // Tampered: one character of the payload changed.
        var parts = valid.split(separator: ".").map(String.init)
        var payload = Array(parts[1])
        payload[10] = payload[10] == "A" ? "B" : "A"
        parts[1] = String(payload)
        let tampered = parts.joined(separator: ".")
        let wrongKey = try Vendor(keys: Ed25519.generate()).license()
        let expired = try vendor.license(expires: Date().addingTimeInterval(-86400), issued: Date().addingTimeInterval(-10 * 86400))
        for (license, reason) in [(tampered, "bad"), (wrongKey, "bad_signature"), (expired, "expired"), ("MB1.not-a-license", "malformed"), ("", "")] {
            let response = try await kernel.request("/v1/system/setup", method: .POST, body: Self.setupBody(license))
            #expect(response.status == 400, "\(reason): \(response.body)")
            let json = HTTP.json(response.body)
            if !license.isEmpty {
                #expect(json["code"] as? String == "license_invalid")
                #expect((json["reason"] as? String)?.hasPrefix(reason) == true, "\(json)")
            }
        }
        let weak = HTTP.json(try await kernel.request("/v1/system/setup", method: .POST, body: Self.setupBody(valid, password: "password1234")).body)
        #expect(weak["code"] as? String == "password_policy")
        #expect(weak["field"] as? String == "admin.password")
        let badJSON = try await kernel.request("/v1/system/setup", method: .POST, body: "{not json")
        #expect(badJSON.status == 400 && HTTP.json(badJSON.body)["code"] as? String == "invalid_json")
        status = HTTP.json(try await kernel.request("/v1/system/status").body)
        #expect(status["is_initialized"] as? Bool == false, "setup stays locked after refusals")

        let success = try await kernel.request("/v1/system/setup", method: .POST, body: Self.setupBody(valid))
        #expect(success.status == 201, "\(success.body)")
        let outcome = HTTP.json(success.body)
        #expect(outcome["tier"] as? String == "commercial" && outcome["seats"] as? Int == 20)
        let lines = kernel.log.all
        let index = try #require(lines.firstIndex { $0.contains("MeltyBase Initialized Successfully.") })
        #expect(lines[index + 1].contains("Tier: COMMERCIAL | Seats: 20 | Owner: owner@example.com"))
        #expect(lines[index + 2].contains("Access granted. Entry point: http://localhost:"))
        #expect(lines[index + 2].contains("/dashboard"))

        status = HTTP.json(try await kernel.request("/v1/system/status").body)
        #expect(status["is_initialized"] as? Bool == true)
        #expect(Set(status.keys) == ["is_initialized", "version", "pulse"])
        let again = try await kernel.request("/v1/system/setup", method: .POST, body: Self.setupBody(valid, email: "other@example.com"))
        #expect(again.status == 410 && HTTP.json(again.body)["code"] as? String == "setup_closed")
        await kernel.stop()

        let restarted = try await Self.start(vendor, conninfo: kernel.conninfo, keysDirectory: kernel.kernel.config.keysDirectory)
        #expect(HTTP.json(try await restarted.request("/v1/system/status").body)["is_initialized"] as? Bool == true)
        #expect(try await restarted.request("/v1/system/setup", method: .POST, body: Self.setupBody(valid)).status == 410)

        // The admin is stored as an Argon2id PHC string with at least m=19 MiB, t=2, p=1;
        // the audit chain starts with the setup entry; nothing holds the plaintext.
        let connection = try await TestServices.connect(kernel.conninfo)
        let hash = try #require(try await connection.query("SELECT password_hash FROM public.secrets WHERE email = 'admin@example.com'").rows.first?[0] ?? nil)
        #expect(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(PasswordHasher.verify(Self.password, against: hash))
        let audit = try await connection.query("SELECT seq, action, actor FROM meltybase.audit_log ORDER BY seq")
        #expect(audit.rows.first?[1] == "system.setup")
        let dump =
            try await connection.query(
                """
                SELECT string_agg(t::text, ' ') FROM (
                    SELECT row_to_json(s)::text AS t FROM public.secrets s
                    UNION ALL SELECT row_to_json(a)::text FROM meltybase.audit_log a
                    UNION ALL SELECT row_to_json(st)::text FROM meltybase.system_state st) x
                """
            ).rows.first?[0] ?? ""
        #expect(!dump.contains(Self.password))
        #expect(dump.contains("$argon2id$"))
        #expect(!kernel.log.text.contains(Self.password) && !restarted.log.text.contains(Self.password))
        await restarted.stop()

        // The files of the whole Postgres cluster (tables, WAL) and every process's
        // arguments: no plaintext password anywhere.
        try await connection.query("CHECKPOINT")
        let cluster = try TestServices.start().postgres.clusterDirectory
        let oid = try #require(try await connection.query("SELECT oid FROM pg_database WHERE datname = current_database()").rows.first?[0] ?? nil)
        // This database's files, the shared catalogs and the whole WAL (every write of the run).
        for folder in ["base/\(oid)", "global", "pg_wal"] {
            #expect(try Self.filesContaining(Array(Self.password.utf8), under: cluster + "/" + folder).isEmpty, "\(folder)")
        }
        #expect(Self.processesWithArgument(Self.password).isEmpty)
    }

    /// Paths of regular files below `directory` that contain `needle`.
    static func filesContaining(_ needle: [UInt8], under directory: String) throws -> [String] {
        var hits: [String] = []
        let enumerator = FileManager.default.enumerator(atPath: directory)
        while let relative = enumerator?.nextObject() as? String {
            let path = directory + "/" + relative
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                let data = FileManager.default.contents(atPath: path)
            else { continue }
            if data.range(of: Data(needle)) != nil { hits.append(path) }
        }
        return hits
    }

    /// Pids whose command line contains `text`.
    static func processesWithArgument(_ text: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { entry in
            guard Int(entry) != nil, let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
            return String(decoding: data, as: UTF8.self).contains(text)
        }
    }

    @Test("of 20 concurrent setup calls exactly one succeeds")
    func concurrentSetup() async throws {
        let vendor = Vendor(keys: Ed25519.generate())
        let kernel = try await Self.start(vendor)
        let license = try vendor.license()
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                group.addTask {
                    try await kernel.request("/v1/system/setup", method: .POST, body: Self.setupBody(license, email: "admin\(index)@example.com")).status
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 201 }.count == 1, "\(statuses)")
        #expect(statuses.filter { $0 == 410 }.count == 19)
        let connection = try await TestServices.connect(kernel.conninfo)
        #expect(try await connection.query("SELECT count(*) FROM public.secrets").rows.first?[0] == "1")
        #expect(try await connection.query("SELECT count(*) FROM meltybase.audit_log WHERE action = 'system.setup'").rows.first?[0] == "1")
        await kernel.stop()
    }

    @Test("the password policy explains every rule it applies")
    func passwordPolicy() {
        let policy = PasswordPolicy()
        #expect(policy.violations(password: "short", email: "a@b.io").map(\.code) == ["password_too_short"])
        #expect(policy.violations(password: "admin@example.com", email: "admin@example.com").contains { $0.code == "password_contains_email" })
        #expect(policy.violations(password: "Password1234", email: "a@b.io").map(\.code) == ["password_common"])
        #expect(policy.violations(password: "aaaaaaaaaaaaaaaa", email: "a@b.io").map(\.code) == ["password_common"])
        #expect(policy.violations(password: "Orbital-Quartz-Lantern-77", email: "admin@example.com").isEmpty)
    }

    @Test("meltybase setup reads the password from stdin, never argv, and closes setup")
    func commandLineSetup() async throws {
        let vendor = Vendor(keys: Ed25519.generate())
        let conninfo = try TestServices.freshDatabase()
        let directory = try makeTemporaryDirectory("setup")
        try "[license]\npublic_key = \"\(vendor.publicHex)\"\n".write(toFile: directory + "/plugins.toml", atomically: true, encoding: .utf8)
        func run(_ license: String) throws -> (Int32, String) {
            try runProcess(
                TestPlugins.meltybaseBinary,
                ["setup", "--config", directory + "/plugins.toml", "--license", license, "--admin-email", "cli@example.com"],
                environment: ["MELTYBASE_DATABASE_URL": conninfo, "MELTYBASE_REDIS_URL": "unix:///nonexistent", "PATH": "/usr/bin:/bin"],
                input: Self.password + "\n")
        }
        let license = try vendor.license(tier: .indie, seats: 3)
        let first = try run(license)
        #expect(first.0 == 0, "\(first.1)")
        #expect(first.1.contains("Tier: INDIE | Seats: 3 | Owner: owner@example.com"))
        #expect(!first.1.contains(Self.password))
        let second = try run(license)
        #expect(second.0 == 1)
        #expect(second.1.contains("already initialized"))
    }

    @Test("meltybase setup --evaluation initialises with this machine's evaluation license, only without a vendor key")
    func commandLineEvaluationSetup() async throws {
        func run(_ directory: String, _ toml: String, _ conninfo: String, _ arguments: [String]) throws -> (Int32, String) {
            try toml.write(toFile: directory + "/plugins.toml", atomically: true, encoding: .utf8)
            return try runProcess(
                TestPlugins.meltybaseBinary,
                ["setup", "--config", directory + "/plugins.toml", "--data-dir", directory + "/data", "--admin-email", "eval@example.com"] + arguments,
                environment: ["MELTYBASE_DATABASE_URL": conninfo, "MELTYBASE_REDIS_URL": "unix:///nonexistent", "PATH": "/usr/bin:/bin"],
                input: Self.password + "\n")
        }
        let open = try makeTemporaryDirectory("setup-eval")
        let first = try run(open, "", try TestServices.freshDatabase(), ["--evaluation"])
        #expect(first.0 == 0, "\(first.1)")
        #expect(first.1.contains("Tier: INDIE | Seats: 3 | Owner: evaluation@meltybase.localhost"), "\(first.1)")
        #expect(!first.1.contains(Self.password))
        // With a vendor key configured the evaluation license is not on offer.
        let vendor = Vendor(keys: Ed25519.generate())
        let closed = try makeTemporaryDirectory("setup-eval-vendor")
        let refused = try run(closed, "[license]\npublic_key = \"\(vendor.publicHex)\"\n", try TestServices.freshDatabase(), ["--evaluation"])
        #expect(refused.0 == 1 && refused.1.contains("--evaluation works only while no vendor public key is configured"), "\(refused.1)")
        let neither = try run(closed, "", try TestServices.freshDatabase(), [])
        #expect(neither.0 == 64 && neither.1.contains("--license MB1... (or --license - for stdin) or --evaluation"), "\(neither.1)")
    }
}
