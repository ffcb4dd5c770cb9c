import Crypto
import Foundation
import MeltyEd25519

/// Admin sessions and their refresh tokens in the system database.
///
/// A session (`meltybase.admin_sessions`) is one sign-in: an admin, an assurance level
/// and the methods used (`amr`), an absolute expiry (``lifetime``), and a revocation
/// mark. Its refresh tokens (`meltybase.admin_refresh_tokens`) are stored as SHA-256
/// hashes only. Each use rotates the token: the used one is marked `rotated_at` and a new
/// one issued. Presenting a rotated token again means it was copied (whoever rotated it
/// first, the other party holds a dead copy), so the whole session is revoked: the
/// legitimate client and the thief both have to sign in again (OAuth 2.0 Security BCP,
/// refresh token rotation).
///
/// Raising the assurance level (TOTP) starts a new session and revokes the old one, so a
/// session id never gains privileges (OWASP: renew the session on privilege change).
///
/// Every function runs on the caller's connection, inside its transaction.
enum AdminSessions {
    /// Absolute lifetime of a session: its refresh tokens stop working after this.
    static let lifetime: TimeInterval = 12 * 60 * 60

    /// A session just created or rotated, with the refresh token to hand out (the only copy).
    struct Issued: Sendable {
        var sessionID: String
        var refreshToken: String
        var aal: AssuranceLevel
        var amr: [String]
    }

    /// A live session and its admin, as the authorization check reads them.
    struct Live: Sendable {
        var admin: AdminRecord
        var aal: AssuranceLevel
        var amr: [String]
    }

    /// What presenting a refresh token led to.
    enum Rotation: Sendable {
        /// The token was current: here are the session's new token and its admin.
        case rotated(Issued, AdminRecord)
        /// The token had been rotated before: the session is now revoked.
        case reused(sessionID: String, email: String)
        /// Unknown token, or its session was revoked or has expired.
        case invalid
    }

    /// Opens a session for `adminID` and issues its first refresh token.
    static func create(on connection: PostgresConnection, adminID: String, aal: AssuranceLevel, amr: [String]) async throws -> Issued {
        let rows = try await connection.query(
            """
            INSERT INTO meltybase.admin_sessions (admin_id, aal, amr, expires_at)
            VALUES ($1::uuid, $2, $3, now() + make_interval(secs => $4::double precision)) RETURNING id::text AS id
            """, [adminID, aal.rawValue, amr.joined(separator: " "), String(lifetime)])
        guard let sessionID = rows.value("id") else { throw IdentityError.internalFailure("creating a session returned no id") }
        let token = newRefreshToken()
        try await connection.query("INSERT INTO meltybase.admin_refresh_tokens (token_hash, session_id) VALUES ($1, $2::uuid)", [tokenHash(token), sessionID])
        return Issued(sessionID: sessionID, refreshToken: token, aal: aal, amr: amr)
    }

    /// Rotates the refresh token whose hash is `hash` (see the type's description).
    static func rotate(on connection: PostgresConnection, tokenHash hash: String) async throws -> Rotation {
        let rows = try await connection.query(
            """
            SELECT t.session_id::text AS session_id, t.rotated_at IS NOT NULL AS rotated, s.revoked_at IS NOT NULL AS revoked,
                   s.expires_at > now() AS live, s.aal, s.amr, \(AdminRecord.columns("a"))
            FROM meltybase.admin_refresh_tokens t
            JOIN meltybase.admin_sessions s ON s.id = t.session_id
            JOIN public.secrets a ON a.id = s.admin_id
            WHERE t.token_hash = $1
            FOR UPDATE OF t, s
            """, [hash])
        guard let sessionID = rows.value("session_id"), let admin = AdminRecord(rows, 0) else { return .invalid }
        if rows.value("rotated") == "t" {
            if rows.value("revoked") != "t" { try await revoke(on: connection, sessionID: sessionID, reason: "refresh_token_reuse") }
            return .reused(sessionID: sessionID, email: admin.email)
        }
        guard rows.value("revoked") == "f", rows.value("live") == "t", let aal = rows.value("aal").flatMap(AssuranceLevel.init(rawValue:)) else {
            return .invalid
        }
        try await connection.query("UPDATE meltybase.admin_refresh_tokens SET rotated_at = now() WHERE token_hash = $1", [hash])
        let token = newRefreshToken()
        try await connection.query("INSERT INTO meltybase.admin_refresh_tokens (token_hash, session_id) VALUES ($1, $2::uuid)", [tokenHash(token), sessionID])
        let amr = (rows.value("amr") ?? "").split(separator: " ").map(String.init)
        return .rotated(Issued(sessionID: sessionID, refreshToken: token, aal: aal, amr: amr), admin)
    }

    /// Marks `sessionID` revoked (its access tokens stop working at once, its refresh tokens too).
    static func revoke(on connection: PostgresConnection, sessionID: String, reason: String) async throws {
        try await connection.query(
            "UPDATE meltybase.admin_sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1::uuid AND revoked_at IS NULL",
            [sessionID, reason])
    }

    /// The session `sessionID` of `adminID` when it is neither revoked nor expired.
    static func live(on connection: PostgresConnection, sessionID: String, adminID: String) async throws -> Live? {
        guard UUID(uuidString: sessionID) != nil, UUID(uuidString: adminID) != nil else { return nil }
        let rows = try await connection.query(
            """
            SELECT s.aal, s.amr, \(AdminRecord.columns("a"))
            FROM meltybase.admin_sessions s JOIN public.secrets a ON a.id = s.admin_id
            WHERE s.id = $1::uuid AND s.admin_id = $2::uuid AND s.revoked_at IS NULL AND s.expires_at > now()
            """, [sessionID, adminID])
        guard let admin = AdminRecord(rows, 0), let aal = rows.value("aal").flatMap(AssuranceLevel.init(rawValue:)) else { return nil }
        return Live(admin: admin, aal: aal, amr: (rows.value("amr") ?? "").split(separator: " ").map(String.init))
    }

    /// 32 random bytes, base64url (43 characters).
    static func newRefreshToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return ByteEncoding.base64URL((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    /// Lowercase hex SHA-256 of the token's UTF-8 bytes: what the database stores.
    static func tokenHash(_ token: String) -> String {
        ByteEncoding.hex(Array(SHA256.hash(data: Array(token.utf8))))
    }
}
