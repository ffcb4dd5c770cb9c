import Foundation
import MeltyJSON
import MeltyPostgres

/// Master-key and portal-key rotation, run by `meltybase vault rotate-master` and
/// `meltybase vault rotate-portal-key`. Both are safe to re-run after an interruption.
///
/// `audit` is called inside the rotation's transaction with an action and details, so
/// the audit entry commits together with the change (the CLI appends to the kernel's
/// hash-chained audit log there).
public enum VaultRotation {
    /// Writes an audit entry on the given connection, inside the open transaction.
    public typealias AuditHook = (_ connection: PostgresConnection, _ action: String, _ target: String, _ details: [String: JSONValue]) async throws -> Void

    /// What `rotate-master` did.
    public struct MasterResult: Sendable, Equatable {
        /// Data keys re-wrapped under the current master key.
        public var rewrapped: Int
        /// Data keys that were already under it (skipped).
        public var alreadyCurrent: Int
        /// The current master key's id.
        public var masterKeyID: String
    }

    /// Re-wraps every data key not yet under `keys.current` (unwrapping with a previous
    /// key from `keys`) in one transaction; secret ciphertexts are not touched. Rows
    /// already under the current key are skipped, so a second run changes nothing.
    /// Throws ``VaultError/unknownMasterKey(keyID:portal:configured:)`` (and changes
    /// nothing) when a data key is under a key the ring does not hold. `vault` (the one
    /// serving reads in this process, when there is one) forgets its cached data keys.
    public static func rotateMaster(keys: MasterKeyRing, on connection: PostgresConnection, vault: SecretVault? = nil, audit: AuditHook) async throws -> MasterResult {
        VaultCrypto.ensureInitialized()
        try await VaultSchema.migrate(on: connection)
        let vault = vault ?? SecretVault(keys: keys)
        // Cached keys were unwrapped from the old wrapping: forgotten whatever happens.
        defer { vault.forgetDataKeys() }
        return try await connection.vaultTransaction {
            let rows = try await connection.vaultQuery("SELECT id, portal, master_key_id, wrapped FROM vault.data_keys ORDER BY id FOR UPDATE")
            var result = MasterResult(rewrapped: 0, alreadyCurrent: 0, masterKeyID: keys.current.id)
            var from: Set<String> = []
            for row in 0..<rows.rows.count {
                let id = rows.value("id", row: row) ?? ""
                let portal = rows.value("portal", row: row) ?? ""
                let masterKeyID = rows.value("master_key_id", row: row) ?? ""
                if masterKeyID == keys.current.id {
                    result.alreadyCurrent += 1
                    continue
                }
                guard let previous = keys.key(id: masterKeyID) else {
                    throw VaultError.unknownMasterKey(keyID: masterKeyID, portal: portal, configured: keys.ids)
                }
                let dataKey = try vault.unwrap(try ByteaText.decode(rows.value("wrapped", row: row)), id: id, portal: portal, with: previous)
                let wrapped = try vault.wrap(dataKey: dataKey, id: id, portal: portal, under: keys.current)
                try await connection.vaultQuery(
                    "UPDATE vault.data_keys SET master_key_id = $2, wrapped = $3::bytea, wrapped_at = now() WHERE id = $1",
                    [id, keys.current.id, ByteaText.encode(wrapped)])
                from.insert(masterKeyID)
                result.rewrapped += 1
            }
            _ = try await connection.vaultQuery(
                "INSERT INTO vault.master_key_registry (master_key_id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET master_key_id = excluded.master_key_id", [keys.current.id])
            try await audit(
                connection, "vault.master_key.rotate", "master_key:\(keys.current.id)",
                [
                    "master_key_id": .string(keys.current.id), "from_master_key_ids": .array(from.sorted().map(JSONValue.string)),
                    "rewrapped": .number(Double(result.rewrapped)), "already_current": .number(Double(result.alreadyCurrent)),
                ])
            return result
        }
    }

    /// What `rotate-portal-key` did.
    public struct PortalResult: Sendable, Equatable {
        /// The portal's data key after the rotation.
        public var dataKeyID: String
        /// Whether this run continued an interrupted rotation instead of starting one.
        public var resumed: Bool
        /// Secret versions re-encrypted by this run.
        public var reencrypted: Int
        /// Whether every version is now under the new key and the old key is gone.
        public var complete: Bool
    }

    /// Re-encrypts every version of `portal`'s secrets under a new data key.
    ///
    /// Phase 1 (one transaction): the active key becomes `retiring` and a new active key
    /// is created, so writes from running kernels use the new key at once. Phase 2: versions
    /// still under a retiring key are re-encrypted in batches of `batchSize`, each batch
    /// its own transaction. Phase 3: retiring keys no version uses are deleted. A run that
    /// finds a retiring key resumes (no new key). `maxBatches` stops early (for tests of
    /// resumption); the result then says `complete: false`. `vault` (the one serving reads
    /// in this process, when there is one) forgets its cached data keys, retired ones included.
    public static func rotatePortalKey(
        portal: String, keys: MasterKeyRing, on connection: PostgresConnection, batchSize: Int = 200, maxBatches: Int? = nil,
        vault: SecretVault? = nil, audit: AuditHook
    ) async throws -> PortalResult {
        VaultCrypto.ensureInitialized()
        try await VaultSchema.migrate(on: connection)
        let vault = vault ?? SecretVault(keys: keys)
        // The retired keys must not outlive the rotation in memory: forgotten whatever happens.
        defer { vault.forgetDataKeys() }
        let (newKeyID, resumed) = try await connection.vaultTransaction {
            try await connection.vaultQuery("SELECT pg_advisory_xact_lock(7426102, hashtext($1))", [portal])
            let existing = try await connection.vaultQuery(
                "SELECT id, state FROM vault.data_keys WHERE portal = $1 ORDER BY created_at FOR UPDATE", [portal])
            let states = (0..<existing.rows.count).map { (existing.value("id", row: $0) ?? "", existing.value("state", row: $0) ?? "") }
            if states.contains(where: { $0.1 == "retiring" }), let active = states.first(where: { $0.1 == "active" }) {
                return (active.0, true)
            }
            guard states.contains(where: { $0.1 == "active" }) else {
                throw VaultError.notFound("portal \"\(portal)\" has no vault data key (it has never stored a secret)")
            }
            try await connection.vaultQuery("UPDATE vault.data_keys SET state = 'retiring' WHERE portal = $1 AND state = 'active'", [portal])
            let created = try await vault.activeDataKey(portal: portal, on: connection)
            try await audit(
                connection, "vault.portal_key.rotate", "portal:\(portal)",
                [
                    "phase": "started", "data_key_id": .string(created.id), "retiring": .array(states.map { JSONValue.string($0.0) }),
                ])
            return (created.id, false)
        }
        var reencrypted = 0
        var batches = 0
        while maxBatches.map({ batches < $0 }) ?? true {
            let done: Int = try await connection.vaultTransaction {
                let active = try await vault.activeDataKey(portal: portal, on: connection)
                guard active.id == newKeyID else {
                    throw VaultError.conflict("the active data key of portal \"\(portal)\" changed during the rotation; run the command again")
                }
                let rows = try await connection.vaultQuery(
                    """
                    SELECT v.name, v.version, v.sealed, k.id AS key_id, k.master_key_id, k.wrapped
                    FROM vault.secret_versions v JOIN vault.data_keys k ON k.id = v.data_key_id
                    WHERE v.portal = $1 AND v.data_key_id <> $2
                    ORDER BY v.name, v.version LIMIT $3 FOR UPDATE OF v
                    """, [portal, newKeyID, String(batchSize)])
                for row in 0..<rows.rows.count {
                    let name = rows.value("name", row: row) ?? ""
                    let version = Int(rows.value("version", row: row) ?? "") ?? 0
                    let oldKey = try vault.dataKey(
                        id: rows.value("key_id", row: row) ?? "", portal: portal, storedPortal: portal,
                        masterKeyID: rows.value("master_key_id", row: row) ?? "", wrapped: try ByteaText.decode(rows.value("wrapped", row: row)))
                    let aad = Envelope.secretAAD(portal: portal, name: name, version: version)
                    let plaintext = try Envelope.open(key: oldKey, record: try ByteaText.decode(rows.value("sealed", row: row)), aad: aad)
                    let sealed = try plaintext.withUnsafeBytes { (bytes) in
                        try Envelope.seal(key: active.key, plaintext: bytes, aad: aad)
                    }
                    try await connection.vaultQuery(
                        "UPDATE vault.secret_versions SET data_key_id = $4, sealed = $5::bytea WHERE portal = $1 AND name = $2 AND version = $3",
                        [portal, name, String(version), newKeyID, ByteaText.encode(sealed)])
                }
                return rows.rows.count
            }
            batches += 1
            reencrypted += done
            if done < batchSize { break }
        }
        let complete: Bool = try await connection.vaultTransaction {
            let left = try await connection.vaultQuery(
                "SELECT count(*) AS n FROM vault.secret_versions WHERE portal = $1 AND data_key_id <> $2", [portal, newKeyID])
            guard left.value("n") == "0" else { return false }
            let removed = try await connection.vaultQuery(
                """
                DELETE FROM vault.data_keys k WHERE k.portal = $1 AND k.state = 'retiring'
                AND NOT EXISTS (SELECT 1 FROM vault.secret_versions v WHERE v.data_key_id = k.id) RETURNING id
                """, [portal])
            try await audit(
                connection, "vault.portal_key.rotate", "portal:\(portal)",
                [
                    "phase": "completed", "data_key_id": .string(newKeyID), "reencrypted": .number(Double(reencrypted)),
                    "retired": .array((0..<removed.rows.count).map { JSONValue.string(removed.value("id", row: $0) ?? "") }),
                ])
            return true
        }
        return PortalResult(dataKeyID: newKeyID, resumed: resumed, reencrypted: reencrypted, complete: complete)
    }
}
