import Foundation
import JWTKit
import MeltyEd25519
import NIOConcurrencyHelpers

/// Authenticator assurance level (NIST SP 800-63B): `aal1` after a password, `aal2`
/// after a second factor (TOTP or a recovery code).
public enum AssuranceLevel: String, Sendable, Codable, Comparable {
    case aal1, aal2

    /// `aal1 < aal2`.
    public static func < (lhs: AssuranceLevel, rhs: AssuranceLevel) -> Bool {
        lhs == .aal1 && rhs == .aal2
    }
}

/// The claims of an admin access token.
public struct AdminAccessClaims: JWTPayload, Equatable {
    /// The admin's id (`public.secrets.id`).
    public var sub: SubjectClaim
    /// The admin's email.
    public var email: String
    /// `root` (the setup admin) or `admin`.
    public var role: String
    /// `aal1` or `aal2`.
    public var aal: AssuranceLevel
    /// Authentication methods (RFC 8176): `pwd`, `otp`, `recovery_code`.
    public var amr: [String]
    /// The session (`meltybase.admin_sessions.id`) the token belongs to.
    public var sessionID: String
    /// Issue time.
    public var iat: IssuedAtClaim
    /// Expiry.
    public var exp: ExpirationClaim

    enum CodingKeys: String, CodingKey {
        case sub, email, role, aal, amr, iat, exp
        case sessionID = "session_id"
    }

    /// Refuses an expired token.
    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}

/// Signs and verifies admin access tokens: JWT, HS256 (jwt-kit), 15 minutes.
///
/// The key is `admin_jwt_hs256` in `meltybase.kernel_secrets` (``KernelSecrets``), so every
/// kernel on one system database accepts every other's tokens. It is loaded on first use
/// and kept in memory.
public final class AdminTokens: Sendable {
    /// Lifetime of an access token.
    public static let lifetime: TimeInterval = 15 * 60
    private let database: SystemDatabase
    private let keys = NIOLockedValueBox<JWTKeyCollection?>(nil)

    /// Tokens signed with the key stored in `database`.
    public init(database: SystemDatabase) {
        self.database = database
    }

    /// Tokens signed with `key` (tests, tools).
    public init(database: SystemDatabase, key: [UInt8]) async {
        self.database = database
        let collection = await JWTKeyCollection().add(hmac: HMACKey(from: key), digestAlgorithm: .sha256)
        keys.withLockedValue { $0 = collection }
    }

    /// A signed token for `claims`.
    public func sign(_ claims: AdminAccessClaims) async throws -> String {
        try await collection().sign(claims)
    }

    /// The claims of `token` once its header names HS256, its signature verifies and it has
    /// not expired; otherwise ``IdentityError`` 401 `unauthenticated` naming the reason.
    public func verify(_ token: String) async throws -> AdminAccessClaims {
        try HS256HeaderCheck.require(token, noun: "the access token", kind: "admin")
        do {
            return try await collection().verify(token, as: AdminAccessClaims.self)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            throw IdentityError.unauthenticated("the access token has expired")
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw IdentityError.unauthenticated("the access token's signature does not verify")
        } catch let error as IdentityError {
            throw error
        } catch is PostgresError, is PostgresPoolError {
            throw IdentityError(
                status: 503, code: "database_unavailable", message: "the token key cannot be read: the system database is unavailable", hint: "retry shortly", retryAfterSeconds: 1)
        } catch {
            throw IdentityError.unauthenticated("the access token is malformed")
        }
    }

    private func collection() async throws -> JWTKeyCollection {
        if let existing = keys.withLockedValue({ $0 }) { return existing }
        var secret = try await database.withConnection { connection in
            try await KernelSecrets.loadOrCreate(KernelSecrets.adminTokenSigningKey, on: connection)
        }
        defer { Ed25519.wipe(&secret) }
        let collection = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return keys.withLockedValue { stored in
            if let stored { return stored }
            stored = collection
            return collection
        }
    }
}
