import CSodium
import Crypto
import Foundation
import MeltyPostgres

/// PKCE for mailed links, as GoTrue: a request that sends `code_challenge` (supabase-py's
/// and supabase-js's default flow) leaves a flow state for the user; following the link then
/// redirects with `?code=<auth code>` instead of tokens in the fragment, and
/// `POST /token?grant_type=pkce {auth_code, code_verifier}` trades the code for a session
/// once, within five minutes, for the verifier whose challenge was sent.
enum FlowStates {
    /// The prefix of a link's token when the link belongs to a PKCE flow.
    static let linkPrefix = "pkce_"
    /// Seconds an auth code may wait for its exchange.
    static let authCodeLifetime = 300

    /// What a request asked for: the challenge and `s256` or `plain`.
    struct Challenge: Sendable {
        /// `code_challenge`.
        var challenge: String
        /// `s256` or `plain`.
        var method: String
    }

    /// The table (part of the portal's schema script; idempotent).
    static let schema = """
        CREATE TABLE IF NOT EXISTS auth.flow_state (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
            authentication_method text NOT NULL,
            code_challenge text NOT NULL,
            code_challenge_method text NOT NULL CHECK (code_challenge_method IN ('s256', 'plain')),
            auth_code text NOT NULL UNIQUE,
            auth_code_issued_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (user_id, authentication_method)
        );
        """

    /// The PKCE parameters of a body: nil when absent, 400 when half there or malformed.
    static func challenge(_ body: [String: Any]) throws -> Challenge? {
        let challenge = body["code_challenge"].flatMap { $0 is NSNull ? nil : $0 }
        let method = body["code_challenge_method"].flatMap { $0 is NSNull ? nil : $0 }
        if challenge == nil && method == nil { return nil }
        guard let challenge = challenge as? String, let method = (method as? String)?.lowercased(), ["s256", "plain"].contains(method),
            (43...128).contains(challenge.utf8.count),
            challenge.utf8.allSatisfy({ byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "~")
            })
        else {
            throw AuthFailure(
                status: 400, code: "validation_failed",
                message: "PKCE flow requires code_challenge (43 to 128 characters of A-Z a-z 0-9 - . _ ~) and code_challenge_method (s256 or plain)")
        }
        return Challenge(challenge: challenge, method: method)
    }

    /// Records the flow of `userID` for links of `method` (replacing an older one).
    static func begin(userID: String, method: String, _ challenge: Challenge, pool: PostgresPool) async throws {
        let code = UUID().uuidString.lowercased()
        _ = try await pool.run { connection in
            try await connection.query(
                """
                INSERT INTO auth.flow_state (user_id, authentication_method, code_challenge, code_challenge_method, auth_code)
                VALUES ($1::uuid, $2, $3, $4, $5)
                ON CONFLICT (user_id, authentication_method) DO UPDATE SET code_challenge = excluded.code_challenge,
                  code_challenge_method = excluded.code_challenge_method, auth_code = excluded.auth_code, auth_code_issued_at = NULL, created_at = now()
                """, [userID, method, challenge.challenge, challenge.method, code])
        }
    }

    /// After a link of `method` was redeemed: the auth code to hand to the redirect, if a
    /// flow is waiting (its five minutes start now).
    static func issue(userID: String, method: String, pool: PostgresPool) async throws -> String? {
        try await pool.run { connection in
            try await connection.query(
                "UPDATE auth.flow_state SET auth_code_issued_at = now() WHERE user_id = $1::uuid AND authentication_method = $2 RETURNING auth_code",
                [userID, method]
            ).scalar
        }
    }

    /// Redeems `authCode` with `verifier`: the user and the flow's method, or an ``AuthFailure``.
    static func exchange(authCode: String, verifier: String, pool: PostgresPool) async throws -> (userID: String, method: String) {
        let row = try await pool.run { connection in
            try await connection.transaction { connection in
                let row = try await connection.query(
                    """
                    DELETE FROM auth.flow_state WHERE auth_code = $1 AND auth_code_issued_at IS NOT NULL
                    RETURNING user_id::text, authentication_method, code_challenge, code_challenge_method,
                      (auth_code_issued_at > now() - make_interval(secs => $2::integer))::text
                    """, [authCode, String(authCodeLifetime)]
                ).rows.first
                return (row, true)
            }
        }
        guard let row, let userID = row[0], let method = row[1], let challenge = row[2] else {
            throw AuthFailure(status: 404, code: "flow_state_not_found", message: "invalid flow state, no valid flow state found")
        }
        guard row[4] == "true" else {
            throw AuthFailure(status: 422, code: "flow_state_expired", message: "invalid flow state, flow state has expired")
        }
        let computed: String
        if row[3] == "plain" {
            computed = verifier
        } else {
            computed = AuthEncoding.base64URL(SHA256.hash(data: Data(verifier.utf8)))
        }
        guard computed.utf8.count == challenge.utf8.count, sodium_memcmp(computed, challenge, computed.utf8.count) == 0 else {
            throw AuthFailure(status: 403, code: "bad_code_verifier", message: "code challenge does not match previously saved code verifier")
        }
        return (userID, method)
    }
}
