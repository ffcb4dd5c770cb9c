import MeltyPostgres

/// Edge's tables in the kernel's system database (schema `edge`), created idempotently at
/// every start, as Vault keeps `vault`. Versions hold a bundle's files as
/// ``FunctionBundle/archive`` (Postgres compresses large values itself, TOAST).
public enum EdgeSchema {
    /// The channel a change to a portal's function is announced on (payload `<portal>/<name>`).
    public static let channel = "edge_functions"

    /// The DDL script (one implicit transaction, serialised by an advisory lock).
    public static let sql = """
        SET client_min_messages = warning;
        SELECT pg_advisory_xact_lock(7426102);
        CREATE SCHEMA IF NOT EXISTS edge;
        CREATE TABLE IF NOT EXISTS edge.functions (
            portal text NOT NULL,
            name text NOT NULL,
            active_version integer NOT NULL CHECK (active_version >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (portal, name)
        );
        CREATE TABLE IF NOT EXISTS edge.versions (
            portal text NOT NULL,
            name text NOT NULL,
            version integer NOT NULL CHECK (version > 0),
            sha256 text NOT NULL,
            manifest jsonb NOT NULL,
            files bytea NOT NULL,
            size integer NOT NULL CHECK (size >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text NOT NULL DEFAULT '',
            PRIMARY KEY (portal, name, version),
            FOREIGN KEY (portal, name) REFERENCES edge.functions (portal, name) ON DELETE CASCADE
        );
        CREATE TABLE IF NOT EXISTS edge.logs (
            id bigserial PRIMARY KEY,
            portal text NOT NULL,
            name text NOT NULL,
            version integer NOT NULL,
            request_id text NOT NULL DEFAULT '',
            level text NOT NULL,
            message text NOT NULL,
            at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS logs_function ON edge.logs (portal, name, id);
        CREATE INDEX IF NOT EXISTS logs_at ON edge.logs (at);
        """

    /// Applies ``sql`` on `connection`.
    public static func migrate(on connection: PostgresConnection) async throws(EdgeStoreError) {
        do {
            _ = try await connection.execute(sql)
        } catch {
            throw EdgeStoreError.database("cannot create the edge schema in the system database: \(error)")
        }
    }
}
