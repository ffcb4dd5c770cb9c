import Foundation
import MeltyPostgres
import PortalDatabaseCore

/// Limits password sign-ins and TOTP verifications of a portal's users, per account and per
/// client address, as the kernel limits admin logins.
///
/// Counts live in the portal database (`meltybase_internal.auth_attempts`), so every kernel
/// serving the portal shares them. An attempt is counted when it *starts* and a success gives
/// it back: a burst of concurrent guesses cannot slip past the limit while the first ones are
/// still being checked (each password try also costs an Argon2id hash). Past a limit within the
/// window the key locks for `lockSeconds` and attempts get 429 `over_request_rate_limit`.
struct AttemptThrottle: Sendable {
    /// What is counted: `password` (sign-in) or `mfa` (TOTP verification).
    var scope: String
    var accountLimit: Int
    var addressLimit: Int
    var windowSeconds = 15 * 60
    var lockSeconds = 15 * 60

    static let password = AttemptThrottle(scope: "password", accountLimit: 10, addressLimit: 30)
    static let mfa = AttemptThrottle(scope: "mfa", accountLimit: 5, addressLimit: 30)

    /// The table and functions behind it (part of the portal's schema script).
    static let schema = """
        CREATE TABLE IF NOT EXISTS meltybase_internal.auth_attempts (
            key text PRIMARY KEY,
            attempts integer NOT NULL,
            window_ends timestamptz NOT NULL,
            locked_until timestamptz
        );
        CREATE OR REPLACE FUNCTION meltybase_internal.auth_attempt_begin(p_keys text[], p_limits integer[], p_window interval, p_lock interval)
        RETURNS double precision LANGUAGE plpgsql AS $f$
        DECLARE
          wait double precision;
          counted integer;
        BEGIN
          SELECT coalesce(max(extract(epoch FROM locked_until - now())), 0) INTO wait
            FROM meltybase_internal.auth_attempts WHERE key = ANY(p_keys) AND locked_until > now();
          IF wait > 0 THEN RETURN wait; END IF;
          FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
            INSERT INTO meltybase_internal.auth_attempts AS a (key, attempts, window_ends) VALUES (p_keys[i], 1, now() + p_window)
            ON CONFLICT (key) DO UPDATE SET
              attempts = CASE WHEN a.window_ends <= now() THEN 1 ELSE a.attempts + 1 END,
              window_ends = CASE WHEN a.window_ends <= now() THEN now() + p_window ELSE a.window_ends END,
              locked_until = NULL
            RETURNING attempts INTO counted;
            IF counted > p_limits[i] THEN
              UPDATE meltybase_internal.auth_attempts SET locked_until = now() + p_lock, attempts = attempts - 1 WHERE key = p_keys[i];
              wait := greatest(wait, extract(epoch FROM p_lock));
            END IF;
          END LOOP;
          RETURN wait;
        END $f$;
        DELETE FROM meltybase_internal.auth_attempts WHERE window_ends < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now());
        """

    private func keys(account: String, address: String) -> [String] {
        // Hashed: no email address sits in the table in clear.
        let digest = AuthHandler.hashToken(account).prefix(32)
        return ["\(scope):account:\(digest)", "\(scope):address:\(address)"]
    }

    /// Counts one attempt; throws 429 while the account or the address is locked.
    func begin(account: String, address: String, pool: PostgresPool) async throws {
        let keys = keys(account: account, address: address)
        // Each value bound on its own: no array literal to quote by hand.
        let arguments = [keys[0], keys[1], String(accountLimit), String(addressLimit), "\(windowSeconds) seconds", "\(lockSeconds) seconds"]
        let wait: Double = try await pool.run { connection in
            Double(
                try await connection.query(
                    """
                    SELECT meltybase_internal.auth_attempt_begin(ARRAY[$1, $2]::text[], ARRAY[$3::integer, $4::integer], $5::interval, $6::interval)::text
                    """, arguments
                ).scalar ?? "0") ?? 0
        }
        guard wait <= 0 else {
            let seconds = max(1, Int(wait.rounded(.up)))
            throw AuthFailure(
                status: 429, code: "over_request_rate_limit",
                message: "Too many attempts: try again in \(seconds) seconds", retryAfterSeconds: seconds)
        }
    }

    /// Gives the attempt back after a success: the account's count restarts, the address's drops by one.
    func succeeded(account: String, address: String, pool: PostgresPool) async {
        let keys = keys(account: account, address: address)
        _ = try? await pool.run { connection in
            try await connection.query(
                """
                UPDATE meltybase_internal.auth_attempts SET attempts = CASE WHEN key = $1 THEN 0 ELSE greatest(attempts - 1, 0) END
                WHERE key = $1 OR key = $2
                """, keys)
        }
    }
}
