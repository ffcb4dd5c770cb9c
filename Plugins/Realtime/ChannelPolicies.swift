import Foundation
import MeltyPostgres
import PortalDatabaseCore
import RealtimeCore

/// Private channels, as Supabase Realtime authorises them: by row-level security policies on
/// `realtime.messages` in the portal's database. Joining reads (a policy must let the caller
/// SELECT a row of the channel's topic); sending needs INSERT. `realtime.topic()` returns the
/// topic being checked, so policies can say `realtime.topic() = 'room:' || auth.uid()`.
///
/// Broadcasts on private channels are stored there too, which is what `replay` reads back.
struct ChannelPolicies: Sendable {
    let pool: PostgresPool

    /// The `realtime` schema, table and function every portal database gets (idempotent).
    /// Owned by the portal's owner role, so its migrations can create policies on it.
    static func schemaScript(owner: String) -> String {
        let owner = SQL.ident(owner)
        return """
            CREATE SCHEMA IF NOT EXISTS realtime;
            ALTER SCHEMA realtime OWNER TO \(owner);
            GRANT USAGE ON SCHEMA realtime TO anon, authenticated, service_role;
            CREATE TABLE IF NOT EXISTS realtime.messages (
                id bigserial PRIMARY KEY,
                topic text NOT NULL,
                extension text NOT NULL DEFAULT 'broadcast',
                event text,
                payload jsonb,
                private boolean NOT NULL DEFAULT true,
                inserted_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE INDEX IF NOT EXISTS messages_topic_inserted_at ON realtime.messages (topic, inserted_at);
            ALTER TABLE realtime.messages OWNER TO \(owner);
            ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
            GRANT SELECT, INSERT ON realtime.messages TO anon, authenticated, service_role;
            GRANT USAGE ON SEQUENCE realtime.messages_id_seq TO anon, authenticated, service_role;
            CREATE OR REPLACE FUNCTION realtime.topic() RETURNS text LANGUAGE sql STABLE AS
              $f$ SELECT nullif(current_setting('realtime.topic', true), '') $f$;
            ALTER FUNCTION realtime.topic() OWNER TO \(owner);
            GRANT EXECUTE ON FUNCTION realtime.topic() TO PUBLIC;
            """
    }

    /// Creates the schema in the portal's database.
    static func install(pool: PostgresPool, portal: String) async throws {
        try await pool.run { connection in
            _ = try await connection.execute(schemaScript(owner: PortalDatabaseNames.owner(portal)))
        }
    }

    /// What `caller` may do on private channel `topic` (its name without `realtime:`).
    func access(topic: String, caller: Caller) async throws -> (read: Bool, write: Bool) {
        let claims = String(decoding: caller.claimsJSON, as: UTF8.self)
        return try await pool.run { connection in
            _ = try await connection.query("BEGIN")
            do {
                // A row of the topic, written as the kernel's role, that the caller's policies judge.
                _ = try await connection.query(
                    "INSERT INTO realtime.messages (topic, extension, event, private) VALUES ($1, 'broadcast', 'phx_join_check', true)", [topic])
                _ = try await connection.query(
                    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), set_config('realtime.topic', $3, true)",
                    [caller.role, claims, topic])
                let read =
                    try await connection.query("SELECT count(*) FROM realtime.messages WHERE topic = $1 AND extension = 'broadcast'", [topic])
                    .scalar.flatMap(Int.init) ?? 0 > 0
                _ = try await connection.query("SAVEPOINT write_check")
                var write = true
                do {
                    _ = try await connection.query(
                        "INSERT INTO realtime.messages (topic, extension, event, private) VALUES ($1, 'broadcast', 'phx_join_check', true)", [topic])
                } catch {
                    write = false
                }
                _ = try await connection.query("ROLLBACK")
                return (read, write)
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        }
    }

    /// Stores a broadcast of a private channel for replay.
    func store(topic: String, body: BroadcastBody) async throws {
        guard body.isJSON else { return }
        try await pool.run { connection in
            _ = try await connection.query(
                "INSERT INTO realtime.messages (topic, extension, event, payload, private) VALUES ($1, 'broadcast', $2, $3::jsonb, true)",
                [topic, body.event, String(decoding: body.payload, as: UTF8.self)])
        }
    }

    /// Stored broadcasts of `topic` after `since` (ms since 1970) that `caller` may read, oldest first.
    func replay(topic: String, since: Double, limit: Int, caller: Caller) async throws -> [(id: String, body: BroadcastBody)] {
        let claims = String(decoding: caller.claimsJSON, as: UTF8.self)
        return try await pool.run { connection in
            let rows = try await connection.pipeline([
                ("BEGIN READ ONLY", []),
                (
                    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), set_config('realtime.topic', $3, true)",
                    [caller.role, claims, topic]
                ),
                (
                    """
                    SELECT id::text, coalesce(event, ''), coalesce(payload, '{}'::jsonb)::text FROM realtime.messages
                    WHERE topic = $1 AND extension = 'broadcast' AND event IS DISTINCT FROM 'phx_join_check'
                      AND inserted_at > to_timestamp($2::double precision / 1000) ORDER BY id LIMIT $3
                    """,
                    [topic, String(since), String(limit)]
                ),
                ("COMMIT", []),
            ])
            return rows[2].rows.map { row in
                (row[0] ?? "", BroadcastBody(event: row[1] ?? "", payload: Array((row[2] ?? "{}").utf8), isJSON: true))
            }
        }
    }
}
