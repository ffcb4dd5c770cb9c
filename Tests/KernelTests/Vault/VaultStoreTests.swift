import Foundation
import Testing
import VaultCore
@testable import Kernel

/// VaultCore on a real Postgres: envelope storage, records moved between rows and portals,
/// wrong master keys, and both rotations (1,000 secrets).
@Suite("Vault storage and rotation on Postgres", .timeLimit(.minutes(3)))
struct VaultStoreTests {
    static func key(_ byte: UInt8) throws -> MasterKey { try MasterKey(bytes: [UInt8](repeating: byte, count: 32)) }

    /// A fresh system database with the vault schema.
    static func database() throws -> PostgresConnection {
        let connection = try PostgresConnection(conninfo: try TestServices.freshDatabase())
        try VaultSchema.migrate(on: connection)
        return connection
    }

    static func put(_ vault: SecretVault, _ portal: String, _ name: String, _ value: String, on connection: PostgresConnection) throws {
        try Array(value.utf8).withUnsafeBytes { _ = try vault.create(portal: portal, name: name, value: $0, description: nil, actor: "test", on: connection) }
    }

    static func get(_ vault: SecretVault, _ portal: String, _ name: String, version: Int? = nil, on connection: PostgresConnection) throws -> String? {
        try vault.reveal(portal: portal, name: name, version: version, on: connection).value.utf8String()
    }

    @Test("Create, version, list without values, soft delete, purge; only ciphertext is stored")
    func lifecycle() throws {
        let connection = try Self.database()
        let vault = SecretVault(keys: MasterKeyRing(current: try Self.key(1)))
        try Self.put(vault, "acme", "STRIPE_KEY", "sk_live_lifecycle_v1", on: connection)
        #expect(throws: VaultError.self) { try Self.put(vault, "acme", "STRIPE_KEY", "again", on: connection) }
        _ = try Array("sk_live_lifecycle_v2".utf8).withUnsafeBytes {
            try vault.update(portal: "acme", name: "STRIPE_KEY", value: $0, description: "live key", actor: "test", on: connection)
        }
        #expect(try Self.get(vault, "acme", "STRIPE_KEY", on: connection) == "sk_live_lifecycle_v2")
        #expect(try Self.get(vault, "acme", "STRIPE_KEY", version: 1, on: connection) == "sk_live_lifecycle_v1")
        #expect(try vault.versions(portal: "acme", name: "STRIPE_KEY", on: connection).map(\.version) == [2, 1])
        #expect(try vault.list(portal: "acme", on: connection).map(\.name) == ["STRIPE_KEY"])
        #expect(try vault.list(portal: "other", on: connection).isEmpty)
        let dump = try connection.query("SELECT string_agg(sealed::text, ',') AS s FROM vault.secret_versions").value("s") ?? ""
        #expect(!dump.contains(VaultCrypto.hex(Array("sk_live".utf8))))

        try vault.delete(portal: "acme", name: "STRIPE_KEY", purge: false, on: connection)
        #expect(throws: VaultError.self) { try Self.get(vault, "acme", "STRIPE_KEY", on: connection) }
        #expect(try vault.list(portal: "acme", on: connection).isEmpty)
        #expect(try vault.list(portal: "acme", includeDeleted: true, on: connection).first?.deletedAt != nil)
        #expect(throws: VaultError.self) { try Self.put(vault, "acme", "STRIPE_KEY", "new", on: connection) }
        try vault.delete(portal: "acme", name: "STRIPE_KEY", purge: true, on: connection)
        #expect(try connection.query("SELECT count(*) AS n FROM vault.secret_versions").value("n") == "0")
        try Self.put(vault, "acme", "STRIPE_KEY", "recreated", on: connection)
        #expect(try Self.get(vault, "acme", "STRIPE_KEY", on: connection) == "recreated")
    }

    @Test("A ciphertext copied to another name, version or portal, or a wrapped key copied to another portal, fails cleanly")
    func movedRecords() throws {
        let connection = try Self.database()
        let keys = MasterKeyRing(current: try Self.key(2))
        let vault = SecretVault(keys: keys)
        try Self.put(vault, "alpha", "A", "alpha-secret-a", on: connection)
        try Self.put(vault, "alpha", "B", "alpha-secret-b", on: connection)
        try Self.put(vault, "beta", "A", "beta-secret-a", on: connection)

        // Another name in the same portal (same data key): the AAD names the secret.
        try connection.query("""
            UPDATE vault.secret_versions SET sealed = (SELECT sealed FROM vault.secret_versions WHERE portal = 'alpha' AND name = 'A')
            WHERE portal = 'alpha' AND name = 'B'
            """)
        #expect(throws: VaultError.authenticationFailed) { try Self.get(vault, "alpha", "B", on: connection) }

        // Another version of the same name.
        _ = try Array("alpha-secret-a2".utf8).withUnsafeBytes { try vault.update(portal: "alpha", name: "A", value: $0, description: nil, actor: "t", on: connection) }
        try connection.query("""
            UPDATE vault.secret_versions SET sealed = (SELECT sealed FROM vault.secret_versions WHERE portal = 'alpha' AND name = 'A' AND version = 1)
            WHERE portal = 'alpha' AND name = 'A' AND version = 2
            """)
        #expect(throws: VaultError.authenticationFailed) { try Self.get(vault, "alpha", "A", on: connection) }
        #expect(try Self.get(vault, "alpha", "A", version: 1, on: connection) == "alpha-secret-a")

        // Another portal, with the data key reference copied too.
        try connection.query("""
            UPDATE vault.secret_versions t SET sealed = s.sealed, data_key_id = s.data_key_id
            FROM vault.secret_versions s WHERE s.portal = 'alpha' AND s.name = 'A' AND s.version = 1
              AND t.portal = 'beta' AND t.name = 'A'
            """)
        #expect(throws: VaultError.authenticationFailed) { try Self.get(vault, "beta", "A", on: connection) }

        // A wrapped data key copied into another portal's row does not unwrap there.
        let fresh = SecretVault(keys: keys)
        try Self.put(fresh, "gamma", "G", "gamma-secret", on: connection)
        try Self.put(fresh, "delta", "D", "delta-secret", on: connection)
        try connection.query("""
            UPDATE vault.data_keys SET wrapped = (SELECT wrapped FROM vault.data_keys WHERE portal = 'gamma') WHERE portal = 'delta'
            """)
        #expect(throws: VaultError.authenticationFailed) { try Self.get(SecretVault(keys: keys), "delta", "D", on: connection) }
    }

    @Test("A wrong master key gives a clean error naming the key ids, never garbage")
    func wrongMasterKey() throws {
        let connection = try Self.database()
        let right = try Self.key(3)
        try Self.put(SecretVault(keys: MasterKeyRing(current: right)), "acme", "K", "wrong-key-canary", on: connection)
        let wrong = try Self.key(4)
        do {
            _ = try Self.get(SecretVault(keys: MasterKeyRing(current: wrong)), "acme", "K", on: connection)
            Issue.record("a wrong master key opened the secret")
        } catch let error as VaultError {
            #expect(error == .unknownMasterKey(keyID: right.id, portal: "acme", configured: [wrong.id]))
            #expect(error.description.contains(right.id) && error.description.contains(wrong.id))
        }
        // Even if the row claims the wrong key's id, AES-GCM refuses.
        try connection.query("UPDATE vault.data_keys SET master_key_id = $1", [wrong.id])
        #expect(throws: VaultError.authenticationFailed) { try Self.get(SecretVault(keys: MasterKeyRing(current: wrong)), "acme", "K", on: connection) }
    }

    @Test("rotate-master with 1,000 secrets: values identical, ciphertexts untouched, idempotent, the old key opens nothing")
    func rotateMaster() throws {
        let connection = try Self.database()
        let old = try Self.key(5)
        let new = try Self.key(6)
        let vault = SecretVault(keys: MasterKeyRing(current: old))
        let portals = ["p0", "p1", "p2", "p3"]
        var expected: [String: String] = [:]
        for index in 0..<1000 {
            let portal = portals[index % portals.count]
            let value = "rotation-value-\(index)-\(UUID().uuidString)"
            try Self.put(vault, portal, "SECRET_\(index)", value, on: connection)
            expected["\(portal)/SECRET_\(index)"] = value
        }
        let sealedBefore = try connection.query("SELECT md5(string_agg(sealed::text, ',' ORDER BY portal, name, version)) AS h FROM vault.secret_versions").value("h")
        var audits: [(String, [String: Any])] = []
        let result = try VaultRotation.rotateMaster(keys: MasterKeyRing(current: new, previous: [old]), on: connection) { _, action, _, details in
            audits.append((action, details))
        }
        #expect(result.rewrapped == 4 && result.alreadyCurrent == 0)
        #expect(audits.first?.0 == "vault.master_key.rotate" && audits.first?.1["rewrapped"] as? Int == 4)
        let again = try VaultRotation.rotateMaster(keys: MasterKeyRing(current: new, previous: [old]), on: connection) { _, _, _, _ in }
        #expect(again.rewrapped == 0 && again.alreadyCurrent == 4)
        let sealedAfter = try connection.query("SELECT md5(string_agg(sealed::text, ',' ORDER BY portal, name, version)) AS h FROM vault.secret_versions").value("h")
        #expect(sealedBefore == sealedAfter, "secret ciphertexts must not change")

        let rotated = SecretVault(keys: MasterKeyRing(current: new))
        var mismatches = 0
        for (place, value) in expected {
            let parts = place.split(separator: "/").map(String.init)
            if try Self.get(rotated, parts[0], parts[1], on: connection) != value { mismatches += 1 }
        }
        #expect(mismatches == 0)

        // The old key: no data key row names it, and forcing it onto each row fails AES-GCM.
        let stale = SecretVault(keys: MasterKeyRing(current: old))
        #expect(throws: VaultError.self) { try Self.get(stale, "p0", "SECRET_0", on: connection) }
        let rows = try connection.query("SELECT id, portal, master_key_id, wrapped::text AS wrapped FROM vault.data_keys")
        #expect(rows.rows.count == 4)
        for row in 0..<rows.rows.count {
            #expect(rows.value("master_key_id", row: row) == new.id)
            let wrapped = VaultCrypto.fromHex(String(rows.value("wrapped", row: row)!.dropFirst(2)))!
            #expect(throws: VaultError.authenticationFailed) {
                try stale.unwrap(wrapped, id: rows.value("id", row: row)!, portal: rows.value("portal", row: row)!, with: old)
            }
        }
        // A rotation that meets a key it does not hold changes nothing.
        #expect(throws: VaultError.self) {
            try VaultRotation.rotateMaster(keys: MasterKeyRing(current: try Self.key(7)), on: connection) { _, _, _, _ in }
        }
        #expect(try connection.query("SELECT count(*) AS n FROM vault.data_keys WHERE master_key_id = $1", [new.id]).value("n") == "4")
    }

    @Test("rotate-portal-key re-encrypts one portal under a new data key, resumes after an interruption, leaves others alone")
    func rotatePortalKey() throws {
        let connection = try Self.database()
        let keys = MasterKeyRing(current: try Self.key(8))
        let vault = SecretVault(keys: keys)
        var expected: [String: String] = [:]
        for index in 0..<50 {
            let value = "portal-rotation-\(index)"
            try Self.put(vault, "acme", "S\(index)", value, on: connection)
            expected["S\(index)"] = value
        }
        _ = try Array("acme-s0-v2".utf8).withUnsafeBytes { try vault.update(portal: "acme", name: "S0", value: $0, description: nil, actor: "t", on: connection) }
        try Self.put(vault, "other", "O", "other-portal", on: connection)
        let otherKey = try connection.query("SELECT id FROM vault.data_keys WHERE portal = 'other'").value("id")
        let oldKey = try connection.query("SELECT id FROM vault.data_keys WHERE portal = 'acme'").value("id")

        var actions: [String] = []
        let first = try VaultRotation.rotatePortalKey(portal: "acme", keys: keys, on: connection, batchSize: 10, maxBatches: 2) { _, action, _, details in
            actions.append("\(action):\(details["phase"] ?? "")")
        }
        #expect(!first.complete && first.reencrypted == 20 && !first.resumed)
        // While interrupted, a kernel still reads both old and new, and writes with the new key.
        #expect(try Self.get(SecretVault(keys: keys), "acme", "S49", on: connection) == "portal-rotation-49")
        try Self.put(vault, "acme", "DURING", "written-during-rotation", on: connection)
        let second = try VaultRotation.rotatePortalKey(portal: "acme", keys: keys, on: connection, batchSize: 10) { _, action, _, details in
            actions.append("\(action):\(details["phase"] ?? "")")
        }
        #expect(second.complete && second.resumed && second.dataKeyID == first.dataKeyID && second.reencrypted == 31)
        #expect(actions == ["vault.portal_key.rotate:started", "vault.portal_key.rotate:completed"])
        #expect(try connection.query("SELECT count(*) AS n FROM vault.data_keys WHERE id = $1", [oldKey]).value("n") == "0")
        #expect(try connection.query("SELECT id FROM vault.data_keys WHERE portal = 'other'").value("id") == otherKey)

        let reader = SecretVault(keys: keys)
        expected["S0"] = "acme-s0-v2"
        for (name, value) in expected { #expect(try Self.get(reader, "acme", name, on: connection) == value) }
        #expect(try Self.get(reader, "acme", "S0", version: 1, on: connection) == "portal-rotation-0")
        #expect(try Self.get(reader, "acme", "DURING", on: connection) == "written-during-rotation")
        #expect(try Self.get(reader, "other", "O", on: connection) == "other-portal")
        #expect(throws: VaultError.self) {
            try VaultRotation.rotatePortalKey(portal: "nobody", keys: keys, on: connection) { _, _, _, _ in }
        }
    }
}
