import Foundation
import MeltyJSON
import MeltyPostgres
import MeltyTestServices
import Testing
import VaultCore

/// VaultCore on a real Postgres: envelope storage, records moved between rows and portals,
/// wrong master keys, and both rotations (1,000 secrets).
@Suite("Vault storage and rotation on Postgres", .timeLimit(.minutes(3)))
struct VaultStoreTests {
    static func key(_ byte: UInt8) throws -> MasterKey { try MasterKey(bytes: [UInt8](repeating: byte, count: 32)) }

    /// A fresh system database with the vault schema.
    static func database() async throws -> PostgresConnection {
        let connection = try await TestServices.connect(try TestServices.freshDatabase())
        try await VaultSchema.migrate(on: connection)
        return connection
    }

    static func put(_ vault: SecretVault, _ portal: String, _ name: String, _ value: String, on connection: PostgresConnection) async throws {
        _ = try await vault.create(portal: portal, name: name, value: SecretBytes(copying: Array(value.utf8)), description: nil, actor: "test", on: connection)
    }

    static func get(_ vault: SecretVault, _ portal: String, _ name: String, version: Int? = nil, on connection: PostgresConnection) async throws -> String? {
        try await vault.reveal(portal: portal, name: name, version: version, on: connection).value.utf8String()
    }

    @Test("Create, version, list without values, soft delete, purge; only ciphertext is stored")
    func lifecycle() async throws {
        let connection = try await Self.database()
        let vault = SecretVault(keys: MasterKeyRing(current: try Self.key(1)))
        try await Self.put(vault, "acme", "STRIPE_KEY", "sk_live_lifecycle_v1", on: connection)
        await #expect(throws: VaultError.self) { try await Self.put(vault, "acme", "STRIPE_KEY", "again", on: connection) }
        _ = try await vault.update(
            portal: "acme", name: "STRIPE_KEY", value: SecretBytes(copying: Array("sk_live_lifecycle_v2".utf8)), description: "live key", actor: "test", on: connection)
        #expect(try await Self.get(vault, "acme", "STRIPE_KEY", on: connection) == "sk_live_lifecycle_v2")
        #expect(try await Self.get(vault, "acme", "STRIPE_KEY", version: 1, on: connection) == "sk_live_lifecycle_v1")
        #expect(try await vault.versions(portal: "acme", name: "STRIPE_KEY", on: connection).map(\.version) == [2, 1])
        #expect(try await vault.list(portal: "acme", on: connection).map(\.name) == ["STRIPE_KEY"])
        #expect(try await vault.list(portal: "other", on: connection).isEmpty)
        let dump = try await connection.query("SELECT string_agg(sealed::text, ',') AS s FROM vault.secret_versions").value("s") ?? ""
        #expect(!dump.contains(VaultCrypto.hex(Array("sk_live".utf8))))

        try await vault.delete(portal: "acme", name: "STRIPE_KEY", purge: false, on: connection)
        await #expect(throws: VaultError.self) { try await Self.get(vault, "acme", "STRIPE_KEY", on: connection) }
        #expect(try await vault.list(portal: "acme", on: connection).isEmpty)
        #expect(try await vault.list(portal: "acme", includeDeleted: true, on: connection).first?.deletedAt != nil)
        await #expect(throws: VaultError.self) { try await Self.put(vault, "acme", "STRIPE_KEY", "new", on: connection) }
        try await vault.delete(portal: "acme", name: "STRIPE_KEY", purge: true, on: connection)
        #expect(try await connection.query("SELECT count(*) AS n FROM vault.secret_versions").value("n") == "0")
        try await Self.put(vault, "acme", "STRIPE_KEY", "recreated", on: connection)
        #expect(try await Self.get(vault, "acme", "STRIPE_KEY", on: connection) == "recreated")
    }

    @Test("A ciphertext copied to another name, version or portal, or a wrapped key copied to another portal, fails cleanly")
    func movedRecords() async throws {
        let connection = try await Self.database()
        let keys = MasterKeyRing(current: try Self.key(2))
        let vault = SecretVault(keys: keys)
        try await Self.put(vault, "alpha", "A", "alpha-secret-a", on: connection)
        try await Self.put(vault, "alpha", "B", "alpha-secret-b", on: connection)
        try await Self.put(vault, "beta", "A", "beta-secret-a", on: connection)

        // Another name in the same portal (same data key): the AAD names the secret.
        try await connection.query(
            """
            UPDATE vault.secret_versions SET sealed = (SELECT sealed FROM vault.secret_versions WHERE portal = 'alpha' AND name = 'A')
            WHERE portal = 'alpha' AND name = 'B'
            """)
        await #expect(throws: VaultError.authenticationFailed) { try await Self.get(vault, "alpha", "B", on: connection) }

        // Another version of the same name.
        _ = try await vault.update(portal: "alpha", name: "A", value: SecretBytes(copying: Array("alpha-secret-a2".utf8)), description: nil, actor: "t", on: connection)
        try await connection.query(
            """
            UPDATE vault.secret_versions SET sealed = (SELECT sealed FROM vault.secret_versions WHERE portal = 'alpha' AND name = 'A' AND version = 1)
            WHERE portal = 'alpha' AND name = 'A' AND version = 2
            """)
        await #expect(throws: VaultError.authenticationFailed) { try await Self.get(vault, "alpha", "A", on: connection) }
        #expect(try await Self.get(vault, "alpha", "A", version: 1, on: connection) == "alpha-secret-a")

        // Another portal, with the data key reference copied too.
        try await connection.query(
            """
            UPDATE vault.secret_versions t SET sealed = s.sealed, data_key_id = s.data_key_id
            FROM vault.secret_versions s WHERE s.portal = 'alpha' AND s.name = 'A' AND s.version = 1
              AND t.portal = 'beta' AND t.name = 'A'
            """)
        await #expect(throws: VaultError.authenticationFailed) { try await Self.get(vault, "beta", "A", on: connection) }

        // A wrapped data key copied into another portal's row does not unwrap there.
        let fresh = SecretVault(keys: keys)
        try await Self.put(fresh, "gamma", "G", "gamma-secret", on: connection)
        try await Self.put(fresh, "delta", "D", "delta-secret", on: connection)
        try await connection.query(
            """
            UPDATE vault.data_keys SET wrapped = (SELECT wrapped FROM vault.data_keys WHERE portal = 'gamma') WHERE portal = 'delta'
            """)
        await #expect(throws: VaultError.authenticationFailed) { try await Self.get(SecretVault(keys: keys), "delta", "D", on: connection) }
    }

    @Test("A wrong master key gives a clean error naming the key ids, never garbage")
    func wrongMasterKey() async throws {
        let connection = try await Self.database()
        let right = try Self.key(3)
        try await Self.put(SecretVault(keys: MasterKeyRing(current: right)), "acme", "K", "wrong-key-canary", on: connection)
        let wrong = try Self.key(4)
        do {
            _ = try await Self.get(SecretVault(keys: MasterKeyRing(current: wrong)), "acme", "K", on: connection)
            Issue.record("a wrong master key opened the secret")
        } catch let error as VaultError {
            #expect(error == .unknownMasterKey(keyID: right.id, portal: "acme", configured: [wrong.id]))
            #expect(error.description.contains(right.id) && error.description.contains(wrong.id))
        }
        // Even if the row claims the wrong key's id, AES-GCM refuses.
        try await connection.query("UPDATE vault.data_keys SET master_key_id = $1", [wrong.id])
        await #expect(throws: VaultError.authenticationFailed) { try await Self.get(SecretVault(keys: MasterKeyRing(current: wrong)), "acme", "K", on: connection) }
    }

    @Test("rotate-master with 1,000 secrets: values identical, ciphertexts untouched, idempotent, the old key opens nothing")
    func rotateMaster() async throws {
        let connection = try await Self.database()
        let old = try Self.key(5)
        let new = try Self.key(6)
        let vault = SecretVault(keys: MasterKeyRing(current: old))
        let portals = ["p0", "p1", "p2", "p3"]
        var expected: [String: String] = [:]
        for index in 0..<1000 {
            let portal = portals[index % portals.count]
            let value = "rotation-value-\(index)-\(UUID().uuidString)"
            try await Self.put(vault, portal, "SECRET_\(index)", value, on: connection)
            expected["\(portal)/SECRET_\(index)"] = value
        }
        let sealedBefore = try await connection.query("SELECT md5(string_agg(sealed::text, ',' ORDER BY portal, name, version)) AS h FROM vault.secret_versions").value("h")
        var audits: [(String, [String: JSONValue])] = []
        let result = try await VaultRotation.rotateMaster(keys: MasterKeyRing(current: new, previous: [old]), on: connection) { _, action, _, details in
            audits.append((action, details))
        }
        #expect(result.rewrapped == 4 && result.alreadyCurrent == 0)
        #expect(audits.first?.0 == "vault.master_key.rotate" && audits.first?.1["rewrapped"]?.intValue == 4)
        let again = try await VaultRotation.rotateMaster(keys: MasterKeyRing(current: new, previous: [old]), on: connection) { _, _, _, _ in }
        #expect(again.rewrapped == 0 && again.alreadyCurrent == 4)
        let sealedAfter = try await connection.query("SELECT md5(string_agg(sealed::text, ',' ORDER BY portal, name, version)) AS h FROM vault.secret_versions").value("h")
        #expect(sealedBefore == sealedAfter, "secret ciphertexts must not change")

        let rotated = SecretVault(keys: MasterKeyRing(current: new))
        var mismatches = 0
        for (place, value) in expected {
            let parts = place.split(separator: "/").map(String.init)
            if try await Self.get(rotated, parts[0], parts[1], on: connection) != value { mismatches += 1 }
        }
        #expect(mismatches == 0)

        // The old key: no data key row names it, and forcing it onto each row fails AES-GCM.
        let stale = SecretVault(keys: MasterKeyRing(current: old))
        await #expect(throws: VaultError.self) { try await Self.get(stale, "p0", "SECRET_0", on: connection) }
        let rows = try await connection.query("SELECT id, portal, master_key_id, wrapped::text AS wrapped FROM vault.data_keys")
        #expect(rows.rows.count == 4)
        for row in 0..<rows.rows.count {
            #expect(rows.value("master_key_id", row: row) == new.id)
            let wrapped = VaultCrypto.fromHex(String(rows.value("wrapped", row: row)!.dropFirst(2)))!
            #expect(throws: VaultError.authenticationFailed) {
                try stale.unwrap(wrapped, id: rows.value("id", row: row)!, portal: rows.value("portal", row: row)!, with: old)
            }
        }
        // A rotation that meets a key it does not hold changes nothing.
        await #expect(throws: VaultError.self) {
            try await VaultRotation.rotateMaster(keys: MasterKeyRing(current: try Self.key(7)), on: connection) { _, _, _, _ in }
        }
        #expect(try await connection.query("SELECT count(*) AS n FROM vault.data_keys WHERE master_key_id = $1", [new.id]).value("n") == "4")
    }

    @Test("rotate-portal-key re-encrypts one portal under a new data key, resumes after an interruption, leaves others alone")
    func rotatePortalKey() async throws {
        let connection = try await Self.database()
        let keys = MasterKeyRing(current: try Self.key(8))
        let vault = SecretVault(keys: keys)
        var expected: [String: String] = [:]
        for index in 0..<50 {
            let value = "portal-rotation-\(index)"
            try await Self.put(vault, "acme", "S\(index)", value, on: connection)
            expected["S\(index)"] = value
        }
        _ = try await vault.update(portal: "acme", name: "S0", value: SecretBytes(copying: Array("acme-s0-v2".utf8)), description: nil, actor: "t", on: connection)
        try await Self.put(vault, "other", "O", "other-portal", on: connection)
        let otherKey = try await connection.query("SELECT id FROM vault.data_keys WHERE portal = 'other'").value("id")
        let oldKey = try await connection.query("SELECT id FROM vault.data_keys WHERE portal = 'acme'").value("id")

        var actions: [String] = []
        let first = try await VaultRotation.rotatePortalKey(portal: "acme", keys: keys, on: connection, batchSize: 10, maxBatches: 2) { _, action, _, details in
            actions.append("\(action):\(details["phase"]?.stringValue ?? "")")
        }
        #expect(!first.complete && first.reencrypted == 20 && !first.resumed)
        // While interrupted, a kernel still reads both old and new, and writes with the new key.
        #expect(try await Self.get(SecretVault(keys: keys), "acme", "S49", on: connection) == "portal-rotation-49")
        try await Self.put(vault, "acme", "DURING", "written-during-rotation", on: connection)
        let second = try await VaultRotation.rotatePortalKey(portal: "acme", keys: keys, on: connection, batchSize: 10) { _, action, _, details in
            actions.append("\(action):\(details["phase"]?.stringValue ?? "")")
        }
        #expect(second.complete && second.resumed && second.dataKeyID == first.dataKeyID && second.reencrypted == 31)
        #expect(actions == ["vault.portal_key.rotate:started", "vault.portal_key.rotate:completed"])
        #expect(try await connection.query("SELECT count(*) AS n FROM vault.data_keys WHERE id = $1", [oldKey]).value("n") == "0")
        #expect(try await connection.query("SELECT id FROM vault.data_keys WHERE portal = 'other'").value("id") == otherKey)

        let reader = SecretVault(keys: keys)
        expected["S0"] = "acme-s0-v2"
        for (name, value) in expected { #expect(try await Self.get(reader, "acme", name, on: connection) == value) }
        #expect(try await Self.get(reader, "acme", "S0", version: 1, on: connection) == "portal-rotation-0")
        #expect(try await Self.get(reader, "acme", "DURING", on: connection) == "written-during-rotation")
        #expect(try await Self.get(reader, "other", "O", on: connection) == "other-portal")
        await #expect(throws: VaultError.self) {
            try await VaultRotation.rotatePortalKey(portal: "nobody", keys: keys, on: connection) { _, _, _, _ in }
        }
    }

    @Test("the data key cache is bounded, reads after either rotation decrypt with the new key, and rotated or purged keys are forgotten")
    func dataKeyCache() async throws {
        let connection = try await Self.database()
        let (old, new) = (try Self.key(11), try Self.key(12))
        let vault = SecretVault(keys: MasterKeyRing(current: old), cachedDataKeys: 4)
        try await Self.put(vault, "acme", "K", "cached-value", on: connection)
        #expect(try await Self.get(vault, "acme", "K", on: connection) == "cached-value")
        let acmeKey = try #require(try await connection.query("SELECT id FROM vault.data_keys WHERE portal = 'acme'").value("id"))
        #expect(vault.dataKeys.contains(portal: "acme", id: acmeKey))

        // Bounded: six portals' keys through a cache of four; evicted keys are unwrapped again.
        for index in 0..<6 {
            try await Self.put(vault, "p\(index)", "K", "value-\(index)", on: connection)
            #expect(try await Self.get(vault, "p\(index)", "K", on: connection) == "value-\(index)")
        }
        #expect(vault.dataKeys.count == 4)
        for index in 0..<6 { #expect(try await Self.get(vault, "p\(index)", "K", on: connection) == "value-\(index)") }
        #expect(vault.dataKeys.count == 4)

        // A master-key rotation by another process re-wraps the key: the cached entry no
        // longer matches the stored wrapping, so the serving vault unwraps it again with
        // the new master key.
        let ring = MasterKeyRing(current: new, previous: [old])
        let serving = SecretVault(keys: ring)
        #expect(try await Self.get(serving, "acme", "K", on: connection) == "cached-value")
        _ = try await VaultRotation.rotateMaster(keys: ring, on: connection) { _, _, _, _ in }
        #expect(try await Self.get(serving, "acme", "K", on: connection) == "cached-value")
        #expect(try await Self.get(SecretVault(keys: MasterKeyRing(current: new)), "acme", "K", on: connection) == "cached-value")

        // The same rotation in this process empties the cache of the vault passed in.
        #expect(serving.dataKeys.count > 0)
        _ = try await VaultRotation.rotateMaster(keys: ring, on: connection, vault: serving) { _, _, _, _ in }
        #expect(serving.dataKeys.count == 0)
        #expect(try await Self.get(serving, "acme", "K", on: connection) == "cached-value")
        #expect(serving.dataKeys.contains(portal: "acme", id: acmeKey))

        // A portal-key rotation: the purged key is gone from the database and the cache; a
        // read decrypts with the new key, which is what the cache holds afterwards.
        let rotated = try await VaultRotation.rotatePortalKey(portal: "acme", keys: ring, on: connection, vault: serving) { _, _, _, _ in }
        #expect(rotated.complete && rotated.dataKeyID != acmeKey)
        #expect(try await connection.query("SELECT count(*) AS n FROM vault.data_keys WHERE id = $1", [acmeKey]).value("n") == "0")
        #expect(!serving.dataKeys.contains(portal: "acme", id: acmeKey))
        #expect(try await Self.get(serving, "acme", "K", on: connection) == "cached-value")
        #expect(serving.dataKeys.contains(portal: "acme", id: rotated.dataKeyID))
        #expect(!serving.dataKeys.contains(portal: "acme", id: acmeKey))

        // The same rotation by another process: the first read caches the new key and drops the retired one.
        let elsewhere = try await VaultRotation.rotatePortalKey(portal: "acme", keys: ring, on: connection) { _, _, _, _ in }
        #expect(elsewhere.complete && serving.dataKeys.contains(portal: "acme", id: rotated.dataKeyID))
        #expect(try await Self.get(serving, "acme", "K", on: connection) == "cached-value")
        #expect(serving.dataKeys.contains(portal: "acme", id: elsewhere.dataKeyID))
        #expect(!serving.dataKeys.contains(portal: "acme", id: rotated.dataKeyID))

        // Shutdown wipes everything.
        serving.forgetDataKeys()
        #expect(serving.dataKeys.count == 0)
    }
}
