import MeltyPostgres

/// The Vault's tables in the system database (schema `vault`), created idempotently at
/// every start. Only ciphertext and metadata are stored; see `docs/vault.md`.
public enum VaultSchema {
    /// The DDL script (one implicit transaction, serialised by an advisory lock).
    public static let sql = """
        SET client_min_messages = warning;
        SELECT pg_advisory_xact_lock(7426101);
        CREATE SCHEMA IF NOT EXISTS vault;
        CREATE TABLE IF NOT EXISTS vault.data_keys (
            id text PRIMARY KEY,
            portal text NOT NULL,
            state text NOT NULL CHECK (state IN ('active', 'retiring')),
            master_key_id text NOT NULL,
            wrapped bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            wrapped_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX IF NOT EXISTS data_keys_one_active ON vault.data_keys (portal) WHERE state = 'active';
        CREATE INDEX IF NOT EXISTS data_keys_master_key ON vault.data_keys (master_key_id);
        CREATE TABLE IF NOT EXISTS vault.secrets (
            portal text NOT NULL,
            name text NOT NULL,
            description text,
            current_version integer NOT NULL CHECK (current_version > 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            deleted_at timestamptz,
            PRIMARY KEY (portal, name)
        );
        CREATE TABLE IF NOT EXISTS vault.secret_versions (
            portal text NOT NULL,
            name text NOT NULL,
            version integer NOT NULL CHECK (version > 0),
            data_key_id text NOT NULL REFERENCES vault.data_keys (id),
            sealed bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text NOT NULL DEFAULT '',
            PRIMARY KEY (portal, name, version),
            FOREIGN KEY (portal, name) REFERENCES vault.secrets (portal, name) ON DELETE CASCADE
        );
        CREATE INDEX IF NOT EXISTS secret_versions_data_key ON vault.secret_versions (data_key_id);
        -- The master key every kernel of the cluster must hold (registered by the first one,
        -- moved by rotate-master): a kernel with another key writes nothing.
        CREATE TABLE IF NOT EXISTS vault.master_key_registry (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            master_key_id text NOT NULL
        );
        """

    /// Applies ``sql`` on `connection`.
    public static func migrate(on connection: PostgresConnection) async throws {
        do {
            try await connection.execute(sql)
        } catch {
            throw VaultError.database("cannot create the vault schema in the system database: \(error)")
        }
    }

    /// Throws ``VaultError/unknownMasterKey(keyID:portal:configured:)`` when data keys in
    /// this database are wrapped under a master key not among `held`: another kernel of the
    /// cluster has a key this process lacks, and nothing may be written under a second one.
    /// The registry names the cluster's master key even while no data key exists yet: the
    /// first process registers its current key (`held.first`), later ones must hold it.
    public static func checkMasterKeys(on connection: PostgresConnection, held: [String]) async throws {
        let rows = try await connection.vaultQuery("SELECT master_key_id, min(portal) AS portal FROM vault.data_keys GROUP BY master_key_id ORDER BY 1")
        for row in rows.rows.indices {
            guard let id = rows.value("master_key_id", row: row), !held.contains(id) else { continue }
            throw VaultError.unknownMasterKey(keyID: id, portal: rows.value("portal", row: row) ?? "", configured: held)
        }
        guard let current = held.first else { return }
        // Two statements: a racing first registration commits before the second reads.
        _ = try await connection.vaultQuery("INSERT INTO vault.master_key_registry (master_key_id) VALUES ($1) ON CONFLICT (id) DO NOTHING", [current])
        let registered = try await connection.vaultQuery("SELECT master_key_id FROM vault.master_key_registry").scalar ?? current
        if !held.contains(registered) { throw VaultError.clusterMasterKey(registered: registered, configured: held) }
    }
}

/// bytea as libpq text (`\x` hex), both ways.
enum ByteaText {
    static func encode(_ bytes: [UInt8]) -> String { "\\x" + VaultCrypto.hex(bytes) }

    static func decode(_ text: String?) throws -> [UInt8] {
        guard let text, text.hasPrefix("\\x"), let bytes = VaultCrypto.fromHex(String(text.dropFirst(2))) else {
            throw VaultError.corruptRecord("a stored bytea value is not in hex format")
        }
        return bytes
    }
}

extension PostgresConnection {
    /// Runs `body` between `BEGIN` and `COMMIT` (rolled back when it throws). Postgres
    /// errors become ``VaultError/database(_:)``; Vault errors pass through.
    func vaultTransaction<T>(_ body: () async throws -> T) async throws -> T {
        do {
            try await query("BEGIN")
        } catch {
            throw VaultError.database("\(error)")
        }
        do {
            let result = try await body()
            try await query("COMMIT")
            return result
        } catch let error as VaultError {
            _ = try? await query("ROLLBACK")
            throw error
        } catch {
            _ = try? await query("ROLLBACK")
            throw VaultError.database("\(error)")
        }
    }

    /// One statement, Postgres errors as ``VaultError/database(_:)``. `prepared` (for the
    /// hot reads) runs it through a statement prepared once per connection.
    @discardableResult
    func vaultQuery(_ sql: String, _ parameters: [String?] = [], prepared: Bool = false) async throws -> PostgresRows {
        do {
            return prepared ? try await preparedQuery(sql, parameters) : try await query(sql, parameters)
        } catch {
            throw VaultError.database("\(error)")
        }
    }
}
