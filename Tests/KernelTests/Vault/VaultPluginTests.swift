import AsyncHTTPClient
import Foundation
import MeltyTestServices
import NIOHTTP1
import Testing
import VaultCore

@testable import Kernel

/// The vault plugin in a running kernel: the HTTP API and its access rules, portal
/// isolation over HTTP and `vault.v1`, audit entries, start-up refusals, the rotation
/// commands end to end, and a scan of logs and database files for planted values.
///
/// Serialized: a plugin library is initialised once per process, so two kernels with
/// different vault settings must not overlap.
@Suite("Vault plugin: HTTP API, vault.v1, isolation, rotation CLI, log scan", .serialized, .timeLimit(.minutes(3)))
struct VaultPluginTests {
    /// A 0600 key file holding `hex`.
    static func keyFile(_ hex: String, mode: mode_t = 0o600) throws -> String {
        let path = try makeTemporaryDirectory("vault") + "/master.key"
        FileManager.default.createFile(atPath: path, contents: Data((hex + "\n").utf8), attributes: [.posixPermissions: Int(mode)])
        return path
    }

    static func randomKey() -> String { VaultCrypto.hex(VaultCrypto.randomBytes(32)) }

    static func toml(keyFile: String, maxValueBytes: Int = 4096, dataDirectory: String? = nil) -> String {
        (dataDirectory.map { "[kernel]\ndata_dir = \"\($0)\"\n\n" } ?? "") + """
            [plugins.vault]
            path = "{VAULT}"
            required = false

            [plugins.vault.config]
            master_key_file = "\(keyFile)"
            max_value_bytes = \(maxValueBytes)

            [plugins.echo-swift]
            path = "{ECHO_SWIFT}"

            [portals.alpha]
            plugins = ["vault", "echo-swift"]

            [portals.beta]
            plugins = ["vault", "echo-swift"]

            [portals.gamma]
            plugins = ["echo-swift"]
            """
    }

    /// Sends `json` with an optional bearer token.
    static func call(
        _ kernel: TestKernel, _ path: String, method: HTTPMethod = .GET, json: [String: Any]? = nil, token: String? = nil
    ) async throws -> (status: Int, headers: HTTPHeaders, body: String, json: [String: Any]) {
        var headers: [(String, String)] = [("content-type", "application/json")]
        if let token { headers.append(("authorization", "Bearer \(token)")) }
        let body = try json.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        let response = try await kernel.request(path, method: method, body: body, headers: headers)
        return (response.status, response.headers, response.body, HTTP.json(response.body))
    }

    @Test("HTTP API: access rules, versions, soft delete and purge, portal isolation over HTTP and vault.v1, audited reads, no value in any log or file")
    func httpAPI() async throws {
        let run = UUID().uuidString.prefix(8).lowercased()
        let canary1 = "sk_live_canary_one_\(run)"
        let canary2 = "sk_live_canary_two_\(run)"
        let betaCanary = "beta_only_canary_\(run)"
        let instance = try await AdminIdentityTests.instance(toml: Self.toml(keyFile: try Self.keyFile(Self.randomKey())))
        let kernel = instance.kernel
        defer { Task { await kernel.stop() } }
        let keys = try #require(kernel.kernel.portalKeys)
        let alphaService = try await keys.issueAPIKey(portal: "alpha", role: "service_role")
        let alphaAnon = try await keys.issueAPIKey(portal: "alpha", role: "anon")
        let betaService = try await keys.issueAPIKey(portal: "beta", role: "service_role")
        let base = "/p/alpha/vault/v1/secrets"
        try #require(!kernel.log.text.contains("plugin \"vault\""), "\(kernel.log.all.filter { $0.contains("vault") })")

        // No credential, a forged one, anon: refused before anything else.
        #expect(try await Self.call(kernel, base).status == 401)
        #expect(try await Self.call(kernel, base, token: "not.a.jwt").status == 401)
        let anon = try await Self.call(kernel, base, token: alphaAnon)
        #expect(anon.status == 403 && anon.json["code"] as? String == "service_role_required", "\(anon.body)")

        // Create, bad input, duplicates.
        let created = try await Self.call(kernel, base, method: .POST, json: ["name": "STRIPE_KEY", "value": canary1, "description": "live"], token: alphaService)
        #expect(created.status == 201 && created.json["version"] as? Int == 1, "\(created.body)")
        #expect(!created.body.contains(canary1))
        #expect(try await Self.call(kernel, base, method: .POST, json: ["name": "STRIPE_KEY", "value": "x"], token: alphaService).status == 409)
        for bad: [String: Any] in [
            ["name": "bad name", "value": "x"], ["name": "OK"], ["name": "OK", "value": ""], ["name": "OK", "value": 7],
            ["name": "OK", "value": String(repeating: "v", count: 5000)], ["value": "x"],
        ] {
            let refused = try await Self.call(kernel, base, method: .POST, json: bad, token: alphaService)
            #expect(refused.status == 400 && refused.json["code"] != nil && refused.json["message"] != nil, "\(bad): \(refused.body)")
        }
        let notJSON = try await kernel.request(base, method: .POST, body: "{nope", headers: [("authorization", "Bearer \(alphaService)")])
        #expect(notJSON.status == 400 && HTTP.json(notJSON.body)["code"] as? String == "invalid_json")

        // New version, read values, history, metadata without values.
        let updated = try await Self.call(kernel, base + "/STRIPE_KEY", method: .PUT, json: ["value": canary2], token: alphaService)
        #expect(updated.status == 200 && updated.json["version"] as? Int == 2, "\(updated.body)")
        let value = try await Self.call(kernel, base + "/STRIPE_KEY/value", token: alphaService)
        #expect(value.status == 200 && value.json["value"] as? String == canary2 && value.json["version"] as? Int == 2, "\(value.body)")
        #expect(value.headers.first(name: "cache-control") == "no-store")
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY/value?version=1", token: alphaService).json["value"] as? String == canary1)
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY/value?version=9", token: alphaService).status == 404)
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY/value?version=zero", token: alphaService).status == 400)
        let history = try await Self.call(kernel, base + "/STRIPE_KEY/versions", token: alphaService)
        #expect((history.json["versions"] as? [[String: Any]])?.compactMap { $0["version"] as? Int } == [2, 1], "\(history.body)")
        let listed = try await Self.call(kernel, base, token: alphaService)
        #expect((listed.json["secrets"] as? [[String: Any]])?.first?["name"] as? String == "STRIPE_KEY")
        for body in [listed.body, history.body, try await Self.call(kernel, base + "/STRIPE_KEY", token: alphaService).body] {
            #expect(!body.contains(canary1) && !body.contains(canary2))
        }
        #expect(try await Self.call(kernel, base + "/nope/value", token: alphaService).status == 404)
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY/other", token: alphaService).status == 404)
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY/value", method: .POST, token: alphaService).status == 405)

        // Portal isolation over HTTP: beta's key is invalid on alpha, and beta sees nothing of alpha.
        let crossed = try await Self.call(kernel, base + "/STRIPE_KEY/value", token: betaService)
        #expect(crossed.status == 401 && !crossed.body.contains(canary2), "\(crossed.body)")
        #expect(try await Self.call(kernel, "/p/beta/vault/v1/secrets", method: .POST, json: ["name": "BETA_ONLY", "value": betaCanary], token: betaService).status == 201)
        #expect(try await Self.call(kernel, "/p/beta/vault/v1/secrets/STRIPE_KEY/value", token: betaService).status == 404)
        #expect((try await Self.call(kernel, "/p/beta/vault/v1/secrets", token: betaService).json["secrets"] as? [[String: Any]])?.map { $0["name"] as? String } == ["BETA_ONLY"])

        // Portal isolation through vault.v1: another plugin gets only its own portal's secrets,
        // and only with the rights of the caller it relays (an anonymous relay reads nothing).
        let relayedAnonymously = try await kernel.request("/p/alpha/echo-swift/call?service=vault&method=get", method: .POST, body: #"{"name":"STRIPE_KEY"}"#)
        #expect(relayedAnonymously.status == 403 && !relayedAnonymously.body.contains(canary2), "\(relayedAnonymously.body)")
        let relayedForAnon = try await kernel.request(
            "/p/alpha/echo-swift/call?service=vault&method=get", method: .POST, body: #"{"name":"STRIPE_KEY"}"#,
            headers: [("authorization", "Bearer \(alphaAnon)")])
        #expect(relayedForAnon.status == 403 && !relayedForAnon.body.contains(canary2), "\(relayedForAnon.body)")
        let viaAlpha = try await kernel.request(
            "/p/alpha/echo-swift/call?service=vault&method=get", method: .POST, body: #"{"name":"STRIPE_KEY"}"#,
            headers: [("authorization", "Bearer \(alphaService)")])
        #expect(viaAlpha.status == 200 && HTTP.json(viaAlpha.body)["value"] as? String == canary2, "\(viaAlpha.body)")
        let viaBeta = try await kernel.request(
            "/p/beta/echo-swift/call?service=vault&method=get", method: .POST, body: #"{"name":"STRIPE_KEY"}"#,
            headers: [("authorization", "Bearer \(betaService)")])
        #expect(viaBeta.status != 200 && !viaBeta.body.contains(canary2), "\(viaBeta.body)")
        let viaGamma = try await kernel.request("/p/gamma/echo-swift/call?service=vault&method=get", method: .POST, body: #"{"name":"STRIPE_KEY"}"#)
        #expect(viaGamma.status == 403 && !viaGamma.body.contains(canary2), "\(viaGamma.body)")
        let listViaBeta = try await kernel.request(
            "/p/beta/echo-swift/call?service=vault&method=list", method: .POST, body: "{}",
            headers: [("authorization", "Bearer \(betaService)")])
        #expect(listViaBeta.body.contains("BETA_ONLY") && !listViaBeta.body.contains("STRIPE_KEY") && !listViaBeta.body.contains(betaCanary), "\(listViaBeta.body)")

        // Admins reach portal routes only at aal2 (the kernel refuses aal1 before the vault sees it).
        let aal1 = try await instance.accessToken()
        let metadata = try await Self.call(kernel, base, token: aal1)
        #expect(metadata.status == 403 && metadata.json["code"] as? String == "aal2_required", "\(metadata.body)")
        let refused = try await Self.call(kernel, base + "/STRIPE_KEY/value", token: aal1)
        #expect(refused.status == 403 && refused.json["code"] as? String == "aal2_required", "\(refused.body)")
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY", method: .PUT, json: ["value": "x"], token: aal1).status == 403)
        let aal2 = try #require(try await AdminIdentityTests.enrol(instance, token: aal1).aal2["access_token"] as? String)
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY/value", token: aal2).json["value"] as? String == canary2)

        // Every read is in the audit log by name, never by value.
        let connection = try await instance.database()
        let reads = try await connection.query(
            """
            SELECT actor, target, portal, details::text AS details FROM meltybase.audit_log WHERE action = 'vault.secret.read' ORDER BY seq
            """)
        #expect(reads.rows.count == 4, "\(reads.rows)")  // service v2 and v1, vault.v1, admin at aal2
        #expect(reads.rows.allSatisfy { $0[1] == "secret:STRIPE_KEY" && $0[2] == "alpha" })
        #expect(reads.rows.contains { ($0[3] ?? "").contains("vault.v1") } && reads.rows.contains { ($0[3] ?? "").contains("admin:") })
        let everything = try await connection.query("SELECT string_agg(details::text || target, ' ') AS all FROM meltybase.audit_log").value("all") ?? ""
        #expect(!everything.contains(canary1) && !everything.contains(canary2))

        // Soft delete hides; purge removes.
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY", method: .DELETE, token: alphaService).status == 200)
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY/value", token: alphaService).status == 404)
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY", method: .DELETE, token: alphaService).status == 404)
        #expect(try await Self.call(kernel, base, method: .POST, json: ["name": "STRIPE_KEY", "value": "again"], token: alphaService).status == 409)
        #expect(try await Self.call(kernel, base + "/STRIPE_KEY?purge=true", method: .DELETE, token: alphaService).status == 200)
        #expect(try await connection.query("SELECT count(*) AS n FROM vault.secret_versions WHERE portal = 'alpha'").value("n") == "0")

        // No planted value in the kernel's log, the Postgres log, this database's files or the WAL.
        await kernel.stop()
        let planted = [canary1, canary2, betaCanary]
        #expect(kernel.log.text.contains("plugin=vault"), "the kernel log was captured")
        for canary in planted { #expect(!kernel.log.text.contains(canary), "kernel log contains a secret value") }
        try await connection.query("CHECKPOINT")
        let cluster = try TestServices.start().postgres.clusterDirectory
        let oid = try #require(try await connection.query("SELECT oid FROM pg_database WHERE datname = current_database()").rows.first?[0] ?? nil)
        for folder in ["base/\(oid)", "global", "pg_wal"] {
            for canary in planted {
                #expect(try SetupLifecycleTests.filesContaining(Array(canary.utf8), under: cluster + "/" + folder).isEmpty, "\(folder)")
            }
        }
        let postgresLog = try #require(FileManager.default.contents(atPath: (cluster as NSString).deletingLastPathComponent + "/postgres.log"))
        for canary in planted { #expect(postgresLog.range(of: Data(canary.utf8)) == nil, "postgres.log contains a secret value") }
    }

    @Test("A bad master key refuses the plugin with a message saying which; the kernel keeps serving")
    func badMasterKey() async throws {
        let cases: [(String, String)] = [
            (try Self.keyFile(String(repeating: "ab", count: 31)), "must be 64 hex characters (32 bytes), found 62"),
            (try Self.keyFile(String(repeating: "xy", count: 32)), "is not hex"),
            (try Self.keyFile(Self.randomKey(), mode: 0o644), "has mode 644"),
        ]
        for (path, reason) in cases {
            let kernel = try await TestKernel.start(Self.toml(keyFile: path))
            let status = try await kernel.request("/v1/system/status")
            #expect(status.status == 200)
            #expect(kernel.log.text.contains("plugin \"vault\"") && kernel.log.text.contains(reason), "\(kernel.log.text)")
            #expect(try await kernel.request("/p/alpha/echo-swift/echo").status == 200)
            #expect(try await kernel.request("/p/alpha/vault/v1/secrets").status != 200)
            await kernel.stop()
        }
    }

    @Test(
        "rotate-master and rotate-portal-key, the vault plugin's commands (meltybase vault ...): audited through the host, re-runnable; kernels on the new key read every value, the old key alone reads none"
    )
    func rotationCommands() async throws {
        let oldKey = Self.randomKey()
        let newKey = Self.randomKey()
        let oldFile = try Self.keyFile(oldKey)
        let conninfo = try TestServices.freshDatabase()
        // One data directory for the three kernels: it holds the key that seals portal JWT secrets.
        let dataDirectory = try makeTemporaryDirectory("vault-data")
        let first = try await TestKernel.start(Self.toml(keyFile: oldFile, dataDirectory: dataDirectory), conninfo: conninfo)
        let service = try await #require(first.kernel.portalKeys).issueAPIKey(portal: "alpha", role: "service_role")
        var values: [String: String] = [:]
        for index in 0..<25 {
            let value = "rotation-canary-\(index)-\(UUID().uuidString)"
            values["S\(index)"] = value
            let created = try await Self.call(first, "/p/alpha/vault/v1/secrets", method: .POST, json: ["name": "S\(index)", "value": value], token: service)
            #expect(created.status == 201, "\(created.body)")
        }
        await first.stop()

        let directory = try makeTemporaryDirectory("vault-cli")
        let config = directory + "/plugins.toml"
        try """
        [database]
        url = "\(conninfo)"

        [plugins.vault]
        path = "\(TestPlugins.vault)"

        [plugins.vault.config]
        master_key_file = "\(oldFile)"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": directory]
        func vault(_ arguments: [String], _ extra: [String: String]) throws -> (status: Int32, output: String) {
            try runProcess(TestPlugins.meltybaseBinary, ["vault"] + arguments + ["--config", config], environment: environment.merging(extra) { $1 })
        }
        let rotating = [VaultConfiguration.masterKeyVariable: newKey, VaultConfiguration.previousMasterKeyVariable: oldKey]
        let rotated = try vault(["rotate-master"], rotating)
        #expect(rotated.status == 0 && rotated.output.contains("re-wrapped 1 data key"), "\(rotated.output)")
        let again = try vault(["rotate-master"], rotating)
        #expect(again.status == 0 && again.output.contains("re-wrapped 0 data key(s), 1 already under it"), "\(again.output)")
        let missingPrevious = try vault(["rotate-master"], [VaultConfiguration.masterKeyVariable: Self.randomKey()])
        #expect(missingPrevious.status != 0 && missingPrevious.output.contains("master key id"), "\(missingPrevious.output)")
        let portalKey = try vault(["rotate-portal-key", "--portal", "alpha", "--batch-size", "7"], [VaultConfiguration.masterKeyVariable: newKey])
        #expect(portalKey.status == 0 && portalKey.output.contains("re-encrypted 25 version(s), old key removed"), "\(portalKey.output)")
        for output in [rotated.output, again.output, missingPrevious.output, portalKey.output] {
            #expect(!output.contains(oldKey) && !output.contains(newKey))
        }
        let connection = try await TestServices.connect(conninfo)
        let actions = try await connection.query("SELECT action FROM meltybase.audit_log WHERE actor = 'plugin:vault' AND action LIKE 'vault.%_key.rotate' ORDER BY seq").rows.map {
            $0[0] ?? ""
        }
        #expect(actions == ["vault.master_key.rotate", "vault.master_key.rotate", "vault.portal_key.rotate", "vault.portal_key.rotate"])

        // A kernel on the new key alone reads everything; one on the old key alone reads nothing.
        let current = try await TestKernel.start(Self.toml(keyFile: try Self.keyFile(newKey), dataDirectory: dataDirectory), conninfo: conninfo)
        for (name, value) in values {
            let read = try await Self.call(current, "/p/alpha/vault/v1/secrets/\(name)/value", token: service)
            #expect(read.json["value"] as? String == value, "\(name): \(read.body)")
        }
        await current.stop()
        let stale = try await TestKernel.start(Self.toml(keyFile: oldFile, dataDirectory: dataDirectory), conninfo: conninfo)
        for name in values.keys.sorted().prefix(5) {
            let read = try await Self.call(stale, "/p/alpha/vault/v1/secrets/\(name)/value", token: service)
            #expect(read.status == 503 && read.json["code"] as? String == "master_key_unavailable", "\(read.body)")
        }
        await stale.stop()
        for canary in values.values {
            #expect(!current.log.text.contains(canary) && !stale.log.text.contains(canary))
        }
    }
}
