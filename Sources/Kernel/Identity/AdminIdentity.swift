import Foundation
import Logging
import MeltyPasswords
import MeltyRedis
import Metrics
import NIOConcurrencyHelpers
import NIOPosix

/// The admin behind a verified access token whose session is live.
public struct AdminPrincipal: Sendable {
    /// The admin account.
    public var admin: AdminRecord
    /// The session's assurance level.
    public var aal: AssuranceLevel
    /// The session's authentication methods.
    public var amr: [String]
    /// The session id.
    public var sessionID: String

    /// The admin's id.
    public var adminID: String { admin.id }
    /// The admin's email.
    public var email: String { admin.email }
    /// `admin:<email>`, the audit actor.
    public var actor: String { "admin:\(admin.email)" }
    /// An admin with TOTP signed in with the password only: the second factor is still due.
    public var mfaPending: Bool { admin.totpEnrolled && aal < .aal2 }
}

/// A pair of tokens for one session.
public struct AdminTokenPair: Sendable, Encodable {
    /// The JWT to send as `Authorization: Bearer`.
    public var accessToken: String
    /// Seconds until the access token expires.
    public var expiresIn: Int
    /// The refresh token (for `POST /v1/admin/token`); only its hash is stored.
    public var refreshToken: String
    /// The session's assurance level.
    public var aal: AssuranceLevel
    /// Whether a second factor is due before the session is of use (TOTP enrolled, aal1).
    public var mfaRequired: Bool
    /// The session id.
    public var sessionID: String

    private enum CodingKeys: String, CodingKey {
        case accessToken = "access_token"
        case tokenType = "token_type"
        case expiresIn = "expires_in"
        case refreshToken = "refresh_token"
        case aal
        case mfaRequired = "mfa_required"
        case sessionID = "session_id"
    }

    /// `{access_token, token_type, expires_in, refresh_token, aal, mfa_required, session_id}`.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(accessToken, forKey: .accessToken)
        try container.encode("bearer", forKey: .tokenType)
        try container.encode(expiresIn, forKey: .expiresIn)
        try container.encode(refreshToken, forKey: .refreshToken)
        try container.encode(aal.rawValue, forKey: .aal)
        try container.encode(mfaRequired, forKey: .mfaRequired)
        try container.encode(sessionID, forKey: .sessionID)
    }
}

/// Admin sign-in, sessions, second factor and authorization: the domain behind
/// `/v1/admin/*` and the guard of every admin route. See `docs/admin-identity.md`.
public final class AdminIdentity: Sendable {
    let database: SystemDatabase
    let state: SystemState
    let tokens: AdminTokens
    let loginThrottle: LoginThrottle
    let mfaThrottle: LoginThrottle
    let keysDirectory: String
    let logger: Logger
    /// Where Argon2id hashing and verification run (bounded; never the async executor).
    let blocking: NIOThreadPool
    private let secretBox = NIOLockedValueBox<SecretBox?>(nil)
    /// Repeated refusals (locked, throttle unavailable) are audited once per period.
    let refusalAudit = RefusalAuditGate()

    /// Identity over the system database, counting attempts in `redis` (sign-in is refused
    /// while `redis` is nil or unreachable), with the MFA key in `keysDirectory`.
    /// Argon2id runs on `blocking` (the kernel's pool; NIO's shared one for tools).
    public convenience init(
        database: SystemDatabase, state: SystemState, redis: RedisClient?, keysDirectory: String, logger: Logger,
        blocking: NIOThreadPool = .singleton
    ) {
        self.init(
            database: database, state: state, redis: redis, keysDirectory: keysDirectory, logger: logger, tokens: AdminTokens(database: database),
            blocking: blocking)
    }

    /// The same with the token signer given (tests and the credentials fuzz target use a fixed key).
    init(
        database: SystemDatabase, state: SystemState, redis: RedisClient?, keysDirectory: String, logger: Logger, tokens: AdminTokens,
        blocking: NIOThreadPool = .singleton
    ) {
        self.blocking = blocking
        self.database = database
        self.state = state
        self.tokens = tokens
        self.loginThrottle = LoginThrottle(redis: redis, scope: "login")
        self.mfaThrottle = LoginThrottle(redis: redis, scope: "mfa")
        self.keysDirectory = keysDirectory
        self.logger = logger
    }

    // MARK: Sign-in

    /// Checks `email` and `password` and opens an `aal1` session.
    ///
    /// Unknown email and wrong password give the same 401 `invalid_credentials`, after the
    /// same Argon2id work (an unknown email is checked against a dummy hash). Attempts are
    /// throttled per account and per `address` (429 `login_locked` with `Retry-After`), and
    /// refused with 503 `throttle_unavailable` when Redis cannot count them. Every outcome
    /// is audited (`admin.login`, `admin.login_failed`), never with the password.
    public func login(email rawEmail: String, password: String, address: String) async throws -> AdminTokenPair {
        try await requireInitialized()
        let email = Self.normalize(rawEmail)
        guard !email.isEmpty, email.utf8.count <= 254 else { throw IdentityError.invalidField("email", "email is required (an email address)") }
        guard !email.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw IdentityError.invalidField("email", "an email address holds no control characters or NUL bytes")
        }
        guard !password.isEmpty, password.utf8.count <= 4096 else { throw IdentityError.invalidField("password", "password is required") }

        let decision: LoginThrottle.Decision
        do {
            decision = try await loginThrottle.begin(account: email, address: address)
        } catch let error as IdentityError {
            try await auditRepeatedRefusal(key: "throttle_unavailable", seconds: 60, email: email, address: address, reason: "throttle_unavailable")
            throw error
        }
        if case .locked(let seconds, let onAccount) = decision {
            try await auditRepeatedRefusal(
                key: onAccount ? "account:" + email : "address:" + address, seconds: seconds,
                email: email, address: address, reason: onAccount ? "account_locked" : "address_locked")
            throw IdentityError(
                status: 429, code: "login_locked",
                message: onAccount
                    ? "too many failed sign-ins for this account: it is locked for \(seconds) s"
                    : "too many failed sign-ins from your address: it is locked for \(seconds) s",
                hint: "retry after \(seconds) s", retryAfterSeconds: seconds)
        }

        let found = try await database.withConnection { connection -> (AdminRecord, String)? in
            let rows = try await connection.query(
                "SELECT \(AdminRecord.columns("a")), a.password_hash FROM public.secrets a WHERE a.kind = 'admin' AND a.email = $1", [email])
            guard let admin = AdminRecord(rows, 0), let hash = rows.value("password_hash") else { return nil }
            return (admin, hash)
        }
        let matches = await Self.verifyPassword(password, against: found?.1, on: blocking)
        guard matches, let admin = found?.0 else {
            try await loginThrottle.recordFailure(account: email, address: address)
            try await auditLoginFailure(email: email, address: address, reason: "invalid_credentials")
            throw IdentityError(
                status: 401, code: "invalid_credentials", message: "the email or password is incorrect",
                hint: "check both; after 5 failures within 15 minutes the account is locked for 15 minutes")
        }
        do {
            try await loginThrottle.recordSuccess(account: email, address: address)
        } catch {
            logger.warning("could not reset the sign-in counter after a successful login", metadata: ["error": "\(error)"])
        }
        let session = try await transaction { connection in
            let session = try await AdminSessions.create(on: connection, adminID: admin.id, aal: .aal1, amr: ["pwd"])
            try await AuditChain.append(
                on: connection, actor: "admin:\(email)", action: "admin.login", target: email,
                details: ["session_id": session.sessionID, "aal": "aal1", "address": address, "mfa_required": admin.totpEnrolled])
            return session
        }
        return try await pair(for: admin, session: session)
    }

    /// Exchanges a refresh token for a new pair at the session's level (rotation); a token
    /// used twice revokes its session (401 `refresh_token_reused`).
    public func refresh(_ refreshToken: String, address: String) async throws -> AdminTokenPair {
        guard !refreshToken.isEmpty, refreshToken.utf8.count <= 256 else {
            throw IdentityError.invalidField("refresh_token", "refresh_token is required (the string from the last login or refresh)")
        }
        let hash = AdminSessions.tokenHash(refreshToken)
        let rotation = try await transaction { connection -> AdminSessions.Rotation in
            let rotation = try await AdminSessions.rotate(on: connection, tokenHash: hash)
            if case .reused(let sessionID, let email) = rotation {
                try await AuditChain.append(
                    on: connection, actor: "anonymous", action: "admin.session.reuse_detected", target: email,
                    details: ["session_id": sessionID, "address": address, "revoked": true])
            }
            return rotation
        }
        switch rotation {
        case .rotated(let session, let admin):
            return try await pair(for: admin, session: session)
        case .reused:
            throw IdentityError(
                status: 401, code: "refresh_token_reused",
                message: "this refresh token was already used; the session has been revoked because the token may have been copied",
                hint: "sign in again at POST /v1/admin/login")
        case .invalid:
            throw IdentityError(
                status: 401, code: "invalid_refresh_token", message: "the refresh token is unknown, or its session was revoked or has expired",
                hint: "sign in again at POST /v1/admin/login")
        }
    }

    /// Revokes the principal's session (its access and refresh tokens stop working).
    public func logout(_ principal: AdminPrincipal) async throws {
        try await transaction { connection in
            try await AdminSessions.revoke(on: connection, sessionID: principal.sessionID, reason: "logout")
            try await AuditChain.append(
                on: connection, actor: principal.actor, action: "admin.logout", target: principal.email,
                details: ["session_id": principal.sessionID])
        }
    }

    // MARK: Authorization

    /// The admin behind `authorization` (`Bearer <access token>`), if its session may
    /// perform an action needing `level`.
    ///
    /// 401 `unauthenticated`: no token, not a JWT, `alg` other than HS256 (`none`), wrong
    /// signature, expired, or a revoked or expired session. 403 `aal2_required` (naming
    /// AAL2) when the session is `aal1` and the action needs `aal2`; 403 `mfa_required` when
    /// the admin has TOTP and has not yet passed it in this session, unless
    /// `allowMFAPending` (the challenge route itself).
    public func requireAdmin(_ authorization: String?, aal level: AssuranceLevel, allowMFAPending: Bool = false) async throws -> AdminPrincipal {
        guard let authorization, !authorization.isEmpty else {
            throw IdentityError.unauthenticated("this route needs an admin access token")
        }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else {
            throw IdentityError.unauthenticated("the Authorization header must be \"Bearer <access_token>\"")
        }
        let claims = try await tokens.verify(String(parts[1]).trimmingCharacters(in: .whitespaces))
        let live = try await database.withConnection { connection in
            try await AdminSessions.live(on: connection, sessionID: claims.sessionID, adminID: claims.sub.value)
        }
        guard let live else {
            throw IdentityError.unauthenticated("the session of this access token was signed out or revoked, or has expired")
        }
        let principal = AdminPrincipal(admin: live.admin, aal: live.aal, amr: live.amr, sessionID: claims.sessionID)
        if level == .aal2, principal.aal < .aal2 { throw Self.aal2Required(principal) }
        if principal.mfaPending, !allowMFAPending {
            throw IdentityError(
                status: 403, code: "mfa_required",
                message: "this account has TOTP enabled: this session reaches AAL2 only after a TOTP or recovery code at /v1/admin/mfa/challenge",
                hint: "POST /v1/admin/mfa/challenge {\"code\": \"123456\"} with this token")
        }
        return principal
    }

    /// The admin behind `token` on a portal route (`/p/**`), or nil when `token` is no admin
    /// access token. There an admin acts with the service role over a portal's data, so the
    /// kernel (not each plugin) requires what the most sensitive admin routes require: a live
    /// session (not signed out, revoked or expired), AAL2 (a TOTP or recovery code in this
    /// session), and a verified client certificate when `[admin] require_client_certificate`
    /// is on. The principal carries the session's AAL, not the token's. See docs/security.md.
    public func portalRouteAdmin(token: String, clientCertificatePresented: Bool, certificateRequired: Bool) async throws -> AdminPrincipal? {
        guard let claims = try? await tokens.verify(token) else { return nil }
        if certificateRequired && !clientCertificatePresented {
            throw IdentityError(
                status: 403, code: "client_certificate_required",
                message: "admin tokens reach portal routes only over a connection with a client certificate ([admin] require_client_certificate)",
                hint: "connect over HTTPS with your admin certificate (curl --cert admin.pem --key admin.key), or use the portal's service_role key")
        }
        let live = try await database.withConnection { connection in
            try await AdminSessions.live(on: connection, sessionID: claims.sessionID, adminID: claims.sub.value)
        }
        guard let live else {
            throw IdentityError(
                status: 401, code: "admin_session_ended",
                message: "the session of this admin token was signed out or revoked, or has expired",
                hint: "sign in again at /v1/admin/login")
        }
        guard live.aal >= .aal2 else {
            throw IdentityError(
                status: 403, code: "aal2_required",
                message: "admin tokens reach portal data only at AAL2: this session has not verified a second factor",
                hint: live.admin.totpEnrolled
                    ? "verify a TOTP or recovery code at /v1/admin/mfa/challenge, then use the new token"
                    : "enrol TOTP (Studio: Security, or POST /v1/admin/mfa/totp/enroll), verify it, then use the new token; or use the portal's service_role key")
        }
        return AdminPrincipal(admin: live.admin, aal: live.aal, amr: live.amr, sessionID: claims.sessionID)
    }

    static func aal2Required(_ principal: AdminPrincipal) -> IdentityError {
        IdentityError(
            status: 403, code: "aal2_required",
            message: "this action requires AAL2: verify a TOTP code at /v1/admin/mfa/challenge",
            hint: principal.admin.totpEnrolled
                ? "POST /v1/admin/mfa/challenge {\"code\": \"123456\"} with your access token, then retry with the aal2 token it returns"
                : "enrol TOTP first: POST /v1/admin/mfa/totp/enroll, then POST /v1/admin/mfa/totp/verify {\"code\": ...} returns aal2 tokens")
    }

    // MARK: Shared pieces

    /// Signs the access token of `session`.
    func pair(for admin: AdminRecord, session: AdminSessions.Issued) async throws -> AdminTokenPair {
        let now = Date()
        let claims = AdminAccessClaims(
            sub: .init(value: admin.id), email: admin.email, role: admin.role, aal: session.aal, amr: session.amr,
            sessionID: session.sessionID, iat: .init(value: now), exp: .init(value: now.addingTimeInterval(AdminTokens.lifetime)))
        return AdminTokenPair(
            accessToken: try await tokens.sign(claims), expiresIn: Int(AdminTokens.lifetime), refreshToken: session.refreshToken,
            aal: session.aal, mfaRequired: admin.totpEnrolled && session.aal < .aal2, sessionID: session.sessionID)
    }

    /// Runs `body` in a transaction on one pooled connection: committed when it returns,
    /// rolled back when it throws.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await database.withConnection { connection in
            try await connection.query("BEGIN")
            do {
                let result = try await body(connection)
                try await connection.query("COMMIT")
                return result
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        }
    }

    /// The MFA key, loaded (or created) on first use.
    func mfaSecretBox() throws -> SecretBox {
        try secretBox.withLockedValue { box in
            if let box { return box }
            let loaded = try SecretBox.loadOrCreate(directory: keysDirectory)
            box = loaded
            return loaded
        }
    }

    static let notInitialized = IdentityError(
        status: 409, code: "not_initialized", message: "this instance has not been set up yet, so there is no admin account",
        hint: "complete setup first: POST /v1/system/setup")

    /// Throws 409 `not_initialized` before setup (the cached flag is re-read when false,
    /// in case another kernel completed setup a moment ago).
    func requireInitialized() async throws {
        if state.isInitialized { return }
        let flag = try await database.withConnection { connection in
            try await connection.query("SELECT is_initialized FROM meltybase.system_state").value("is_initialized")
        }
        guard flag == "t" else { throw Self.notInitialized }
        state.isInitialized = true
    }

    static func normalize(_ email: String) -> String {
        email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }

    private func auditLoginFailure(email: String, address: String, reason: String, refusedSinceLastEntry: Int? = nil) async throws {
        var details: [String: Any] = ["address": address, "reason": reason]
        if let refusedSinceLastEntry { details["refused_since_last_entry"] = refusedSinceLastEntry }
        try await AuditChain.append(to: database, actor: "anonymous", action: "admin.login_failed", target: email, details: details)
    }

    /// Audits a refusal that repeats while a lock or an outage lasts once per `key` and
    /// period; the repeats are counted (see ``RefusalAuditGate``).
    private func auditRepeatedRefusal(key: String, seconds: Int, email: String, address: String, reason: String) async throws {
        let decision = refusalAudit.shouldAudit(key, seconds: seconds)
        guard decision.audit else {
            Counter(label: "meltybase_login_refusals_unaudited_total", dimensions: [("reason", reason)]).increment()
            return
        }
        try await auditLoginFailure(email: email, address: address, reason: reason, refusedSinceLastEntry: decision.suppressedBefore)
    }

    /// Argon2id verification on `pool`, off the cooperative pool; an unknown account
    /// (`hash == nil`) costs the same work against a dummy hash and never matches.
    static func verifyPassword(_ password: String, against hash: String?, on pool: NIOThreadPool) async -> Bool {
        guard let hash else {
            _ = await PasswordHasher.verify(password, against: dummyHash, on: pool)
            return false
        }
        return await PasswordHasher.verify(password, against: hash, on: pool)
    }

    /// A hash of a random password with the current parameters, so an unknown email costs
    /// what a known one does.
    static let dummyHash: String = {
        let random = AdminSessions.newRefreshToken()
        return (try? PasswordHasher().hash(random)) ?? "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3l3tZ4vP3GkO5c5S8N3oO0vYf5O3bT0pZ2vQ3d1Xk2U"
    }()
}
