import Foundation
import MeltyPostgres

/// How much auth mail a portal sends: at most `perHour` mails an hour, and one mail per
/// address every `minIntervalSeconds`. Counted in the portal database
/// (`meltybase_internal.auth_email_sends`), so every kernel serving the portal shares it.
/// A send *reserves* its slot before the mail goes out (under a transaction-scoped advisory
/// lock, so concurrent requests cannot both take the last one); a failed send gives it back.
struct MailRateLimit: Sendable {
    /// Mails per portal per hour.
    var perHour: Int
    /// Least seconds between two mails to one address.
    var minIntervalSeconds: Int

    /// The table (part of the portal's schema script; idempotent).
    static let schema = """
        CREATE TABLE IF NOT EXISTS meltybase_internal.auth_email_sends (
            id bigserial PRIMARY KEY,
            address_hash text NOT NULL,
            sent_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS auth_email_sends_sent_at ON meltybase_internal.auth_email_sends (sent_at);
        CREATE INDEX IF NOT EXISTS auth_email_sends_address ON meltybase_internal.auth_email_sends (address_hash, sent_at);
        """

    /// Takes a slot for a mail to `address` and returns its id (for ``release(_:pool:)``);
    /// throws 429 `over_email_send_rate_limit` with the seconds to wait.
    func reserve(address: String, pool: PostgresPool) async throws -> String {
        // Hashed: no address sits in the table in clear.
        let key = AuthHandler.hashToken(address.lowercased()).prefix(32)
        let outcome: (id: String?, wait: Int) = try await pool.run { connection in
            try await connection.transaction { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(hashtext('meltybase_auth_email_sends'))")
                try await connection.query("DELETE FROM meltybase_internal.auth_email_sends WHERE sent_at < now() - interval '1 day'")
                if minIntervalSeconds > 0,
                    let wait = try await connection.query(
                        """
                        SELECT ceil(extract(epoch FROM max(sent_at) + make_interval(secs => $2::integer) - now()))::bigint::text
                        FROM meltybase_internal.auth_email_sends WHERE address_hash = $1 HAVING max(sent_at) + make_interval(secs => $2::integer) > now()
                        """, [String(key), String(minIntervalSeconds)]
                    ).scalar
                {
                    return ((nil, Int(wait) ?? 1), false)
                }
                let row = try await connection.query(
                    """
                    SELECT count(*)::text, ceil(extract(epoch FROM min(sent_at) + interval '1 hour' - now()))::bigint::text
                    FROM meltybase_internal.auth_email_sends WHERE sent_at > now() - interval '1 hour'
                    """
                ).rows.first
                let sent = Int(row?[0] ?? "0") ?? 0
                if sent >= perHour {
                    return ((nil, Int(row?[1] ?? "") ?? 3600), false)
                }
                let id = try await connection.query("INSERT INTO meltybase_internal.auth_email_sends (address_hash) VALUES ($1) RETURNING id::text", [String(key)]).scalar
                return ((id, 0), true)
            }
        }
        guard let id = outcome.id else {
            let seconds = min(max(1, outcome.wait), 3600)
            throw AuthFailure(
                status: 429, code: "over_email_send_rate_limit",
                message: "Email rate limit exceeded: for security purposes, you can only request this after \(seconds) seconds", retryAfterSeconds: seconds)
        }
        return id
    }

    /// Gives back a slot whose mail was not sent.
    func release(_ id: String, pool: PostgresPool) async {
        _ = try? await pool.run { connection in
            try await connection.query("DELETE FROM meltybase_internal.auth_email_sends WHERE id = $1::bigint", [id])
        }
    }
}
