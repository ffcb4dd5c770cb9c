import Foundation
import Logging

/// The kernel's system database: portals, the plugins each enables, system state.
///
/// Calls run on a small ``PostgresPool`` (``defaultPoolSize`` connections) whose sockets a
/// ``PostgresEventLoop`` drives, so no thread waits on Postgres. A body passed to
/// ``withConnection(_:)`` has one connection to itself for its whole run (a transaction it
/// opens stays on that connection). Broken connections are replaced; a call made while
/// Postgres is down throws ``PostgresPoolError/unavailable(_:)`` (the gateway turns that
/// into a 503).
public final class SystemDatabase: Sendable {
    /// Connections the kernel keeps to its system database.
    public static let defaultPoolSize = 4
    /// Jobs that may wait for a connection before callers are refused (503).
    public static let defaultMaxWaiting = 256

    /// The libpq conninfo (or URL) of the system database.
    public let conninfo: String
    /// The loop driving the pool's sockets (the kernel's; shared with its listener).
    public let loop: PostgresEventLoop
    private let pool: PostgresPool
    /// Set when this database created its loop itself (``init(conninfo:poolSize:)``): it stops it on ``close()``.
    private let ownsLoop: Bool

    /// A database reached through `conninfo` (a libpq URL or key/value string) whose
    /// connections `loop` drives; the owner of `loop` shuts it down after ``close()``.
    public init(conninfo: String, loop: PostgresEventLoop, poolSize: Int = SystemDatabase.defaultPoolSize) {
        self.conninfo = conninfo
        self.loop = loop
        self.ownsLoop = false
        pool = PostgresPool(conninfo: conninfo, size: poolSize, maxWaiting: Self.defaultMaxWaiting, loop: loop)
    }

    /// A database with an event loop of its own (command-line tools, tests), stopped by
    /// ``close()`` or when the database is released.
    public init(conninfo: String, poolSize: Int = SystemDatabase.defaultPoolSize) {
        let loop = PostgresEventLoop(name: "meltybase-systemdb")
        self.conninfo = conninfo
        self.loop = loop
        self.ownsLoop = true
        pool = PostgresPool(conninfo: conninfo, size: poolSize, maxWaiting: Self.defaultMaxWaiting, loop: loop)
    }

    deinit { close() }

    /// Runs `body` with a connection of its own (a pooled one, or a fresh one after a failure).
    public func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await pool.run(body)
    }

    /// Closes the pool (idle connections now, busy ones when their job ends); a database
    /// that made its own loop stops it too. Idempotent.
    public func close() {
        pool.close()
        if ownsLoop { loop.shutdown() }
    }

    /// Creates the kernel's tables if they do not exist (idempotent).
    public func migrate() async throws {
        try await withConnection { connection in
            try await connection.execute(SystemSchema.sql)
            try await connection.execute(AuditSchema.sql)
            try await connection.execute(UsageSchema.sql)
        }
    }
}

/// DDL of the system database, applied at every start (idempotent).
enum SystemSchema {
    static let sql = """
        SET client_min_messages = warning;
        SELECT pg_advisory_xact_lock(7426001);
        CREATE SCHEMA IF NOT EXISTS meltybase;
        CREATE TABLE IF NOT EXISTS meltybase.system_state (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            is_initialized boolean NOT NULL DEFAULT false,
            initialized_at timestamptz
        );
        INSERT INTO meltybase.system_state (id) VALUES (true) ON CONFLICT DO NOTHING;
        ALTER TABLE meltybase.system_state
            ADD COLUMN IF NOT EXISTS license_key text,
            ADD COLUMN IF NOT EXISTS license_id text,
            ADD COLUMN IF NOT EXISTS license_tier text,
            ADD COLUMN IF NOT EXISTS license_seats integer,
            ADD COLUMN IF NOT EXISTS license_owner text,
            ADD COLUMN IF NOT EXISTS license_expires_at timestamptz;
        CREATE OR REPLACE FUNCTION meltybase.keep_initialized() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN
                IF OLD.is_initialized AND NOT NEW.is_initialized THEN
                    RAISE EXCEPTION 'meltybase: an initialized instance cannot be reset (setup is closed for good)';
                END IF;
                RETURN NEW;
            END $$;
        DROP TRIGGER IF EXISTS keep_initialized ON meltybase.system_state;
        CREATE TRIGGER keep_initialized BEFORE UPDATE ON meltybase.system_state
            FOR EACH ROW EXECUTE FUNCTION meltybase.keep_initialized();
        -- The seed's "public.secrets" vault: admin identities, Argon2id hashes only.
        CREATE TABLE IF NOT EXISTS public.secrets (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            kind text NOT NULL CHECK (kind IN ('admin')),
            email text NOT NULL UNIQUE,
            password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
            role text NOT NULL DEFAULT 'admin',
            totp_secret text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        -- Admin identity (docs/admin-identity.md): shared kernel secrets, TOTP state,
        -- sessions with hashed refresh tokens, hashed recovery codes.
        CREATE TABLE IF NOT EXISTS meltybase.kernel_secrets (
            name text PRIMARY KEY,
            value text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE public.secrets
            ADD COLUMN IF NOT EXISTS totp_pending_secret text,
            ADD COLUMN IF NOT EXISTS totp_confirmed_at timestamptz,
            ADD COLUMN IF NOT EXISTS totp_last_step bigint;
        -- The key ids every kernel on this database must hold (ClusterKeySet, docs/cluster.md).
        CREATE TABLE IF NOT EXISTS meltybase.cluster_keys (
            name text PRIMARY KEY,
            key_id text NOT NULL,
            registered_at timestamptz NOT NULL DEFAULT now(),
            registered_by text NOT NULL
        );
        CREATE TABLE IF NOT EXISTS meltybase.admin_sessions (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            admin_id uuid NOT NULL REFERENCES public.secrets(id) ON DELETE CASCADE,
            aal text NOT NULL CHECK (aal IN ('aal1', 'aal2')),
            amr text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz,
            revoked_reason text
        );
        CREATE INDEX IF NOT EXISTS admin_sessions_admin ON meltybase.admin_sessions (admin_id);
        CREATE TABLE IF NOT EXISTS meltybase.admin_refresh_tokens (
            token_hash text PRIMARY KEY,
            session_id uuid NOT NULL REFERENCES meltybase.admin_sessions(id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            rotated_at timestamptz
        );
        CREATE INDEX IF NOT EXISTS admin_refresh_tokens_session ON meltybase.admin_refresh_tokens (session_id);
        CREATE TABLE IF NOT EXISTS meltybase.admin_recovery_codes (
            admin_id uuid NOT NULL REFERENCES public.secrets(id) ON DELETE CASCADE,
            code_hash text NOT NULL,
            active boolean NOT NULL DEFAULT false,
            used_at timestamptz,
            PRIMARY KEY (admin_id, code_hash)
        );
        CREATE TABLE IF NOT EXISTS meltybase.portals (
            name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS meltybase.portal_plugins (
            portal text NOT NULL REFERENCES meltybase.portals(name) ON DELETE CASCADE,
            plugin text NOT NULL,
            enabled_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (portal, plugin)
        );
        CREATE TABLE IF NOT EXISTS meltybase.portal_jwt_secrets (
            portal text PRIMARY KEY REFERENCES meltybase.portals(name) ON DELETE CASCADE,
            secret_sealed text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE OR REPLACE FUNCTION meltybase.notify_portals_changed() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('meltybase_portals', ''); RETURN NULL; END $$;
        DROP TRIGGER IF EXISTS portals_changed ON meltybase.portals;
        CREATE TRIGGER portals_changed AFTER INSERT OR UPDATE OR DELETE ON meltybase.portals
            FOR EACH STATEMENT EXECUTE FUNCTION meltybase.notify_portals_changed();
        DROP TRIGGER IF EXISTS portal_plugins_changed ON meltybase.portal_plugins;
        CREATE TRIGGER portal_plugins_changed AFTER INSERT OR UPDATE OR DELETE ON meltybase.portal_plugins
            FOR EACH STATEMENT EXECUTE FUNCTION meltybase.notify_portals_changed();
        """
}
