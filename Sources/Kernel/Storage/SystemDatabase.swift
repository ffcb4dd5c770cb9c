import Foundation
import Logging

/// The kernel's system database: portals, the plugins each enables, system state.
///
/// Calls are serialised on one private thread because libpq blocks; the connection
/// is reopened after Postgres restarts, and a call made while it is down throws
/// ``PostgresError`` (the gateway turns that into a 503).
public final class SystemDatabase: @unchecked Sendable {
    private let conninfo: String
    private let queue = DispatchQueue(label: "meltybase.system-database")
    private var connection: PostgresConnection?

    /// A database reached through `conninfo` (a libpq URL or key/value string).
    public init(conninfo: String) {
        self.conninfo = conninfo
    }

    /// Runs `body` with a live connection on the database thread.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try self.run(body) })
            }
        }
    }

    /// Blocking variant for the command line.
    public func withConnectionSync<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try queue.sync { try run(body) }
    }

    private func run<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        if connection?.isHealthy != true { connection = try PostgresConnection(conninfo: conninfo) }
        do {
            return try body(connection!)
        } catch {
            if connection?.isHealthy != true { connection = nil }
            throw error
        }
    }

    /// Creates the kernel's tables if they do not exist (idempotent).
    public func migrate() async throws {
        try await withConnection { connection in
            try connection.execute(script: SystemSchema.sql)
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
