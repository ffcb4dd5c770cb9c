import CSodium
import Foundation
import MeltyPostgres

/// The links and codes mailed to a portal's users, as GoTrue keeps them: one live token per
/// user and kind in `auth.one_time_tokens`, stored only as `hex(sha224(email + code))`, where
/// `code` is six random digits; the link carries that hash, the mail may also show the code.
/// A token is redeemed once (deleted by the statement that redeems it) and expires after
/// `otp_expiry_seconds`.
enum OneTimeTokens {
    /// What a token is for (GoTrue's `one_time_token_type`).
    enum Kind: String, Sendable {
        /// Confirms the address (sign-up, invitation).
        case confirmation = "confirmation_token"
        /// Signs in (magic link, recovery).
        case recovery = "recovery_token"
        /// Confirms an email change, sent to the new address.
        case emailChangeNew = "email_change_token_new"
        /// Confirms an email change, sent to the current address.
        case emailChangeCurrent = "email_change_token_current"
    }

    /// The table (part of the portal's schema script; idempotent).
    static let schema = """
        CREATE TABLE IF NOT EXISTS auth.one_time_tokens (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
            token_type text NOT NULL CHECK (token_type IN ('confirmation_token', 'recovery_token', 'email_change_token_new', 'email_change_token_current')),
            token_hash text NOT NULL UNIQUE,
            relates_to text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (user_id, token_type)
        );
        """

    /// A new six-digit code, uniformly drawn from libsodium's CSPRNG.
    static func newCode() -> String {
        let value = randombytes_uniform(1_000_000)
        let digits = String(value)
        return String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// GoTrue's token hash: lowercase hex SHA-224 of the address followed by the code.
    static func hash(email: String, code: String) -> String {
        SHA224.hex(Array((email + code).utf8))
    }

    /// Stores the token for `user` and `kind`, replacing the live one; `relatesTo` is the
    /// address it is mailed to (the hash binds to it too).
    static func store(userID: String, kind: Kind, hash: String, relatesTo: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO auth.one_time_tokens (user_id, token_type, token_hash, relates_to) VALUES ($1::uuid, $2, $3, $4)
            ON CONFLICT (user_id, token_type) DO UPDATE SET token_hash = excluded.token_hash, relates_to = excluded.relates_to, created_at = now()
            """, [userID, kind.rawValue, hash, relatesTo])
    }

    /// A redeemed token: whose, which kind, and the address it was sent to.
    struct Redeemed: Sendable {
        /// The user's id.
        var userID: String
        /// The token's kind.
        var kind: Kind
        /// The address it was sent to.
        var relatesTo: String
        /// Whether it was mailed for a PKCE flow (stored with ``FlowStates/linkPrefix``).
        var isPKCE: Bool
    }

    /// Deletes and returns the live, unexpired token stored as one of `hashes` (one or two
    /// forms) of one of `kinds` (inside the caller's transaction, so the redemption and what
    /// it grants commit together).
    static func redeem(hashes: [String], kinds: [Kind], expirySeconds: Int, on connection: PostgresConnection) async throws -> Redeemed? {
        // An expired token never matches; it stays until its user's next one of its kind replaces it.
        let allowed = kinds.map(\.rawValue)
        guard
            let row = try await connection.query(
                """
                DELETE FROM auth.one_time_tokens WHERE token_hash IN ($1, $7) AND token_type IN ($2, $3, $4, $5)
                  AND created_at >= now() - make_interval(secs => $6::integer)
                RETURNING user_id::text, token_type, relates_to, token_hash
                """,
                [
                    hashes.first, allowed.first, allowed.dropFirst().first, allowed.dropFirst(2).first, allowed.dropFirst(3).first, String(expirySeconds),
                    hashes.dropFirst().first,
                ]
            ).rows.first,
            let userID = row[0], let kind = row[1].flatMap(Kind.init(rawValue:)), let relatesTo = row[2]
        else { return nil }
        return Redeemed(userID: userID, kind: kind, relatesTo: relatesTo, isPKCE: row[3]?.hasPrefix(FlowStates.linkPrefix) == true)
    }
}
