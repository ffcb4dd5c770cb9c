import Foundation
import MeltyPostgres
import Synchronization

/// Envelope encryption of portal secrets: each portal has a random 256-bit data key
/// wrapped by the master key; each secret version is sealed with its portal's data key,
/// a fresh nonce, and AAD binding (portal, name, version).
///
/// One per process. Methods take the connection to run on (a pooled one, see
/// `PostgresPool`); unwrapped data keys live in a bounded cache (``DataKeyCache``), locked
/// in memory and wiped when dropped, so a read costs one round trip for its row.
public final class SecretVault: Sendable {
    /// The master keys this process holds.
    public let keys: MasterKeyRing
    /// Largest value accepted, in bytes.
    public let maxValueBytes: Int
    /// Unwrapped data keys by portal and key id.
    public let dataKeys: DataKeyCache

    /// A vault over `keys` keeping at most `cachedDataKeys` unwrapped data keys.
    public init(keys: MasterKeyRing, maxValueBytes: Int = 64 * 1024, cachedDataKeys: Int = DataKeyCache.defaultCapacity) {
        VaultCrypto.ensureInitialized()
        self.keys = keys
        self.maxValueBytes = maxValueBytes
        dataKeys = DataKeyCache(capacity: cachedDataKeys)
    }

    // MARK: Writing

    /// Creates `name` with its first version. ``VaultError/conflict(_:)`` when the name is
    /// taken, also by a soft-deleted secret (purge it first).
    @discardableResult
    public func create(portal: String, name: String, value: SecretBytes, description: String?, actor: String, on connection: PostgresConnection) async throws -> SecretMetadata {
        try validateWrite(name: name, valueLength: value.count, description: description)
        return try await connection.vaultTransaction {
            let key = try await activeDataKey(portal: portal, on: connection)
            let existing = try await connection.vaultQuery(
                "SELECT deleted_at IS NOT NULL AS deleted FROM vault.secrets WHERE portal = $1 AND name = $2 FOR UPDATE", [portal, name])
            if let deleted = existing.value("deleted") {
                throw VaultError.conflict(
                    deleted == "t"
                        ? "secret \"\(name)\" was deleted but not purged; purge it (DELETE ?purge=true) before creating it again"
                        : "secret \"\(name)\" already exists; PUT /secrets/\(name) adds a version")
            }
            let inserted = try await connection.vaultQuery(
                """
                INSERT INTO vault.secrets (portal, name, description, current_version) VALUES ($1, $2, $3, 1)
                ON CONFLICT DO NOTHING RETURNING \(SecretMetadata.columns)
                """, [portal, name, description])
            guard let metadata = SecretMetadata.rows(inserted).first else {
                throw VaultError.conflict("secret \"\(name)\" already exists; PUT /secrets/\(name) adds a version")
            }
            try await insertVersion(portal: portal, name: name, version: 1, value: value, key: key, actor: actor, on: connection)
            return metadata
        }
    }

    /// Adds a version to `name` (and replaces the description when one is given).
    @discardableResult
    public func update(portal: String, name: String, value: SecretBytes, description: String?, actor: String, on connection: PostgresConnection) async throws -> SecretMetadata {
        try validateWrite(name: name, valueLength: value.count, description: description)
        return try await connection.vaultTransaction {
            let key = try await activeDataKey(portal: portal, on: connection)
            let current = try await connection.vaultQuery(
                "SELECT current_version FROM vault.secrets WHERE portal = $1 AND name = $2 AND deleted_at IS NULL FOR UPDATE", [portal, name])
            guard let version = current.value("current_version").flatMap({ Int($0) }) else {
                throw VaultError.notFound("no secret \"\(name)\" in this portal; POST /secrets creates it")
            }
            try await insertVersion(portal: portal, name: name, version: version + 1, value: value, key: key, actor: actor, on: connection)
            let updated = try await connection.vaultQuery(
                """
                UPDATE vault.secrets SET current_version = $3, updated_at = now(), description = COALESCE($4, description)
                WHERE portal = $1 AND name = $2 RETURNING \(SecretMetadata.columns)
                """, [portal, name, String(version + 1), description])
            guard let metadata = SecretMetadata.rows(updated).first else { throw VaultError.notFound("secret \"\(name)\" vanished") }
            return metadata
        }
    }

    private func validateWrite(name: String, valueLength: Int, description: String?) throws {
        try SecretRules.validate(name: name)
        try SecretRules.validate(valueLength: valueLength, maxBytes: maxValueBytes)
        try SecretRules.validate(description: description)
    }

    private func insertVersion(
        portal: String, name: String, version: Int, value: SecretBytes, key: (id: String, key: SecretBytes), actor: String, on connection: PostgresConnection
    ) async throws {
        let sealed = try value.withUnsafeBytes { try Envelope.seal(key: key.key, plaintext: $0, aad: Envelope.secretAAD(portal: portal, name: name, version: version)) }
        try await connection.vaultQuery(
            """
            INSERT INTO vault.secret_versions (portal, name, version, data_key_id, sealed, created_by)
            VALUES ($1, $2, $3, $4, $5::bytea, $6)
            """, [portal, name, String(version), key.id, ByteaText.encode(sealed), actor])
    }

    /// Soft-deletes `name` (values stay encrypted until purged), or with `purge` removes it
    /// and every version for good. Returns whether something changed.
    @discardableResult
    public func delete(portal: String, name: String, purge: Bool, on connection: PostgresConnection) async throws -> Bool {
        try SecretRules.validate(name: name)
        let result =
            purge
            ? try await connection.vaultQuery("DELETE FROM vault.secrets WHERE portal = $1 AND name = $2", [portal, name])
            : try await connection.vaultQuery(
                "UPDATE vault.secrets SET deleted_at = now(), updated_at = now() WHERE portal = $1 AND name = $2 AND deleted_at IS NULL", [portal, name])
        guard result.commandTag.hasSuffix(" 1") else {
            throw VaultError.notFound("no secret \"\(name)\" in this portal")
        }
        return true
    }

    // MARK: Reading

    /// Names and metadata, never values; soft-deleted ones only with `includeDeleted`.
    public func list(portal: String, includeDeleted: Bool = false, on connection: PostgresConnection) async throws -> [SecretMetadata] {
        SecretMetadata.rows(
            try await connection.vaultQuery(
                """
                SELECT \(SecretMetadata.columns) FROM vault.secrets
                WHERE portal = $1 AND ($2 OR deleted_at IS NULL) ORDER BY name
                """, [portal, includeDeleted ? "true" : "false"]))
    }

    /// Metadata of one live secret.
    public func metadata(portal: String, name: String, on connection: PostgresConnection) async throws -> SecretMetadata {
        try SecretRules.validate(name: name)
        guard
            let metadata = SecretMetadata.rows(
                try await connection.vaultQuery(
                    "SELECT \(SecretMetadata.columns) FROM vault.secrets WHERE portal = $1 AND name = $2 AND deleted_at IS NULL", [portal, name],
                    prepared: true)
            ).first
        else { throw VaultError.notFound("no secret \"\(name)\" in this portal") }
        return metadata
    }

    /// Every version of a live secret, newest first.
    public func versions(portal: String, name: String, on connection: PostgresConnection) async throws -> [SecretVersionInfo] {
        _ = try await metadata(portal: portal, name: name, on: connection)
        let rows = try await connection.vaultQuery(
            """
            SELECT version, \(SecretMetadata.timestamp("created_at")) AS created_at, created_by, data_key_id
            FROM vault.secret_versions WHERE portal = $1 AND name = $2 ORDER BY version DESC
            """, [portal, name])
        return (0..<rows.rows.count).map { row in
            SecretVersionInfo(
                version: Int(rows.value("version", row: row) ?? "") ?? 0, createdAt: rows.value("created_at", row: row) ?? "",
                createdBy: rows.value("created_by", row: row) ?? "", dataKeyID: rows.value("data_key_id", row: row) ?? "")
        }
    }

    /// Decrypts the current version (or `version`) of a live secret. The caller releases
    /// the returned bytes as soon as it is done (they are wiped then).
    public func reveal(portal: String, name: String, version: Int? = nil, on connection: PostgresConnection) async throws -> (version: Int, value: SecretBytes) {
        try SecretRules.validate(name: name)
        if let version { try SecretRules.validate(version: version) }
        let rows = try await connection.vaultQuery(
            """
            SELECT v.version, v.sealed, k.id AS key_id, k.portal AS key_portal, k.master_key_id, k.wrapped
            FROM vault.secrets s
            JOIN vault.secret_versions v ON v.portal = s.portal AND v.name = s.name
            JOIN vault.data_keys k ON k.id = v.data_key_id
            WHERE s.portal = $1 AND s.name = $2 AND s.deleted_at IS NULL
              AND v.version = COALESCE($3::integer, s.current_version)
            """, [portal, name, version.map(String.init)], prepared: true)
        guard let found = rows.value("version").flatMap({ Int($0) }), let keyID = rows.value("key_id") else {
            throw VaultError.notFound(version.map { "secret \"\(name)\" has no version \($0)" } ?? "no secret \"\(name)\" in this portal")
        }
        let key = try dataKey(
            id: keyID, portal: portal, storedPortal: rows.value("key_portal") ?? "", masterKeyID: rows.value("master_key_id") ?? "",
            wrapped: try ByteaText.decode(rows.value("wrapped")))
        let sealed = try ByteaText.decode(rows.value("sealed"))
        return (found, try Envelope.open(key: key, record: sealed, aad: Envelope.secretAAD(portal: portal, name: name, version: found)))
    }

    // MARK: Data keys

    /// The portal's active data key, created (random, wrapped under the current master
    /// key) on first use. Call inside a transaction.
    func activeDataKey(portal: String, on connection: PostgresConnection) async throws -> (id: String, key: SecretBytes) {
        for _ in 0..<2 {
            let rows = try await connection.vaultQuery(
                "SELECT id, master_key_id, wrapped FROM vault.data_keys WHERE portal = $1 AND state = 'active'", [portal])
            if let id = rows.value("id") {
                return (
                    id,
                    try dataKey(
                        id: id, portal: portal, storedPortal: portal, masterKeyID: rows.value("master_key_id") ?? "",
                        wrapped: try ByteaText.decode(rows.value("wrapped")))
                )
            }
            let fresh = SecretBytes.random(count: AESGCM.keyLength)
            let id = VaultCrypto.hex(VaultCrypto.randomBytes(16))
            let wrapped = try wrap(dataKey: fresh, id: id, portal: portal, under: keys.current)
            try await connection.vaultQuery(
                """
                INSERT INTO vault.data_keys (id, portal, state, master_key_id, wrapped) VALUES ($1, $2, 'active', $3, $4::bytea)
                ON CONFLICT (portal) WHERE state = 'active' DO NOTHING
                """, [id, portal, keys.current.id, ByteaText.encode(wrapped)])
        }
        throw VaultError.database("could not create or read the active data key of portal \"\(portal)\"")
    }

    /// The unwrapped data key `id` of `portal`, from the cache when it holds the key under
    /// the same wrapping (a key re-wrapped by a master-key rotation, in any process, is
    /// unwrapped again), else unwrapped and cached.
    func dataKey(id: String, portal: String, storedPortal: String, masterKeyID: String, wrapped: [UInt8]) throws -> SecretBytes {
        guard storedPortal == portal else { throw VaultError.authenticationFailed }
        if let cached = dataKeys.key(portal: portal, id: id, wrapped: wrapped) { return cached }
        let generation = dataKeys.generation
        guard let master = keys.key(id: masterKeyID) else {
            throw VaultError.unknownMasterKey(keyID: masterKeyID, portal: portal, configured: keys.ids)
        }
        let key = try unwrap(wrapped, id: id, portal: portal, with: master)
        dataKeys.insert(key, portal: portal, id: id, wrapped: wrapped, unlessClearedSince: generation)
        return key
    }

    /// Seals a data key under a master key.
    func wrap(dataKey: SecretBytes, id: String, portal: String, under master: MasterKey) throws -> [UInt8] {
        try dataKey.withUnsafeBytes { (bytes) in
            try Envelope.seal(key: master.bytes, plaintext: bytes, aad: Envelope.dataKeyAAD(portal: portal, dataKeyID: id))
        }
    }

    /// Opens a wrapped data key with `master`.
    public func unwrap(_ wrapped: [UInt8], id: String, portal: String, with master: MasterKey) throws -> SecretBytes {
        let opened = try Envelope.open(key: master.bytes, record: wrapped, aad: Envelope.dataKeyAAD(portal: portal, dataKeyID: id))
        guard opened.count == AESGCM.keyLength else { throw VaultError.corruptRecord("data key \(id) is not 32 bytes") }
        let locked = opened.withUnsafeBytes { SecretBytes(copying: $0, lockedInMemory: true) }
        return locked
    }

    /// Drops cached data keys (wiping them once no read still uses them): after a rotation
    /// in this process, and at shutdown.
    public func forgetDataKeys() {
        dataKeys.removeAll()
    }
}
