import CSodium
import Crypto
import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import MeltyQR
import MeltyTOTP
import PortalDatabaseCore

/// `/auth/v1`: GoTrue's dialect for a portal's users. Users, sessions, refresh tokens and
/// TOTP factors live in the portal database's `auth` schema; access tokens are signed by
/// the kernel with the portal's secret (`host.signPortalJWT`), so the REST API and every
/// other plugin accept them.
final class AuthHandler: Sendable {
    static let accessTokenLifetime = 3600
    let pool: PostgresPool
    let portal: Portal
    let host: PluginHostServices
    /// Email confirmation, links, mail and anonymous sign-in (AuthSettings.swift).
    let settings: AuthSettings
    /// Sends the portal's auth mail; nil when `[plugins.database.config.smtp]` is not set.
    let mailer: AuthMailer?

    init(pool: PostgresPool, portal: Portal, host: PluginHostServices, settings: AuthSettings = AuthSettings(), loop: PostgresEventLoop? = nil) {
        self.pool = pool
        self.portal = portal
        self.host = host
        self.settings = settings
        mailer = settings.smtp.flatMap { smtp in loop.map { AuthMailer(configuration: smtp, loop: $0, host: host, portal: portal) } }
    }

    func handle(_ request: PluginRequest) async -> PluginResponse {
        do {
            return try await route(request)
        } catch let failure as AuthFailure {
            return Self.failure(failure)
        } catch let error as PostgresPoolError {
            var response = Self.failure(AuthFailure(status: 503, code: "service_unavailable", message: error.description))
            response.headers.append(("retry-after", "1"))
            return response
        } catch let error as PostgresError {
            if error.isConnectionFailure {
                var response = Self.failure(AuthFailure(status: 503, code: "service_unavailable", message: "the database is unavailable"))
                response.headers.append(("retry-after", "1"))
                return response
            }
            if error.sqlState == PostgresError.nulByteState {
                return Self.failure(AuthFailure(status: 400, code: "validation_failed", message: "a value holds a NUL byte (\\u0000); remove it"))
            }
            if error.sqlState?.hasPrefix("22") == true {
                // Data exceptions (a \u0000 in metadata JSON, a value too long, bad input syntax): the request's fault.
                return Self.failure(AuthFailure(status: 400, code: "validation_failed", message: "a value was refused by the database: \(error.message)"))
            }
            return Self.failure(AuthFailure(status: 500, code: "unexpected_failure", message: "database error \(error.sqlState ?? "")"))
        } catch {
            return Self.failure(AuthFailure(status: 500, code: "unexpected_failure", message: "\(error)"))
        }
    }

    static func failure(_ failure: AuthFailure) -> PluginResponse {
        var body: [String: Any] = ["code": failure.status, "error_code": failure.code, "msg": failure.message, "message": failure.message]
        if failure.code == AuthFailure.weakPassword.code { body["weak_password"] = ["reasons": ["length"]] }
        var response = PluginResponse.json(body, status: failure.status)
        if let seconds = failure.retryAfterSeconds { response.headers.append(("retry-after", String(seconds))) }
        return response
    }

    // MARK: routing

    private func route(_ request: PluginRequest) async throws -> PluginResponse {
        let credential = request.credential
        // Every call carries the portal's API key (a signature-valid token); `expired` keeps
        // refresh working when a client still sends its old access token.
        // A link in a mail is followed by a browser, which sends no key (GoTrue's GET /verify is open too).
        let followsMailLink = request.method == "GET" && request.path.split(separator: "/").first == "verify"
        switch credential.kind {
        case .none where !followsMailLink:
            throw AuthFailure(status: 401, code: "no_authorization", message: "No API key found in request; send the portal's anon key in the apikey header")
        case .invalid where !(credential.reason ?? "").contains("expired"):
            throw AuthFailure(status: 401, code: "bad_jwt", message: "invalid API key or token: \(credential.reason ?? "")")
        default: break
        }
        let path = request.path.split(separator: "/").map(String.init)
        let body = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] ?? [:]
        if !request.body.isEmpty && (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] == nil {
            throw AuthFailure(status: 400, code: "bad_json", message: "the request body must be a JSON object")
        }
        switch (request.method, path.first ?? "", path.count) {
        case ("GET", "health", 1): return .json(["name": "MeltyBase Auth", "version": "2.0", "description": "GoTrue-compatible"])
        case ("GET", "settings", 1):
            return .json(
                [
                    "external": ["email": true, "phone": false, "anonymous_users": settings.anonymousUsers] as [String: Any], "disable_signup": false,
                    "mailer_autoconfirm": !settings.confirmEmail, "phone_autoconfirm": false, "sms_provider": "", "saml_enabled": false,
                ] as [String: Any])
        case ("POST", "signup", 1): return try await signUp(request, body)
        case ("POST", "token", 1):
            switch request.queryItems["grant_type"] {
            case "password": return try await passwordGrant(body, address: request.remoteAddress)
            case "refresh_token": return try await refreshGrant(body)
            case "pkce": return try await pkceGrant(body)
            default: throw AuthFailure(status: 400, code: "unsupported_grant_type", message: "grant_type must be password, refresh_token or pkce")
            }
        case ("GET", "user", 1): return .json(try await userJSON(try requireUser(request).userID))
        case ("PUT", "user", 1): return try await updateUser(try requireUser(request), body, redirectTo: request.queryItems["redirect_to"])
        case ("POST", "logout", 1): return try await logout(try requireUser(request), scope: request.queryItems["scope"] ?? "global")
        case ("POST", "factors", 1): return try await enroll(try requireUser(request), body)
        case ("POST", "factors", 3) where path[2] == "challenge": return try await challenge(try requireUser(request), factorID: path[1])
        case ("POST", "factors", 3) where path[2] == "verify": return try await verify(try requireUser(request), factorID: path[1], body, address: request.remoteAddress)
        case ("DELETE", "factors", 2): return try await unenroll(try requireUser(request), factorID: path[1])
        // Links and one-time codes by email (AuthHandler+Email.swift).
        case ("POST", "otp", 1): return try await sendOneTimeCode(request, body)
        case ("GET", "verify", 1), ("POST", "verify", 1): return try await verifyLink(request, body)
        case ("POST", "recover", 1): return try await recover(request, body)
        case ("POST", "resend", 1): return try await resend(request, body)
        case ("POST", "invite", 1): return try await invite(request, body)
        case ("POST", "admin", 2) where path[1] == "generate_link": return try await generateLink(request, body)
        // The admin API for the service role (AuthHandler+Admin.swift).
        case (_, "admin", _): return try await adminRoute(request, path: Array(path.dropFirst()), body: body)
        default:
            throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
        }
    }

    struct UserSession {
        var userID: String
        var sessionID: String
        var aal: String
    }

    /// The signed-in user of a request (an `authenticated` token of this portal with a live session).
    func requireUser(_ request: PluginRequest) throws -> UserSession {
        let credential = request.credential
        guard credential.kind == .portal, let subject = credential.subject, UUID(uuidString: subject) != nil,
            let session = credential.claims["session_id"]?.stringValue, UUID(uuidString: session) != nil
        else {
            if credential.kind == .invalid { throw AuthFailure(status: 403, code: "bad_jwt", message: "invalid JWT: \(credential.reason ?? "")") }
            throw AuthFailure(status: 401, code: "no_authorization", message: "This endpoint requires a Bearer token of a signed-in user")
        }
        return UserSession(userID: subject, sessionID: session, aal: credential.aal ?? "aal1")
    }

    /// Refuses a request that is not made with the portal's `service_role` key (or a
    /// kernel admin credential): the admin API, invitations and generated links.
    func requireServiceRole(_ request: PluginRequest) throws {
        let credential = request.credential
        switch credential.kind {
        case .admin: return
        case .portal where credential.role == "service_role": return
        case .invalid: throw AuthFailure(status: 401, code: "bad_jwt", message: "invalid JWT: \(credential.reason ?? "")")
        default:
            throw AuthFailure(
                status: 403, code: "not_admin",
                message: "User not allowed: this endpoint needs the portal's service_role key (Authorization: Bearer <service_role key>)")
        }
    }

    // MARK: sign-up and sign-in

    static func email(_ body: [String: Any]) throws -> String {
        guard let raw = body["email"] as? String, !raw.isEmpty else { throw AuthFailure(status: 400, code: "validation_failed", message: "email is required") }
        let email = raw.trimmingCharacters(in: .whitespaces).lowercased()
        guard email.count <= 255, email.range(of: "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", options: .regularExpression) != nil else {
            throw AuthFailure(status: 400, code: "email_address_invalid", message: "Unable to validate email address: invalid format")
        }
        return email
    }

    private func signUp(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        if Self.isAnonymousSignUp(body) { return try await anonymousSignUp(body) }
        let email = try Self.mailAddress(body)
        guard let password = body["password"] as? String else { throw AuthFailure(status: 400, code: "validation_failed", message: "password is required") }
        guard password.count >= 8, password.utf8.count <= 1024 else {
            throw AuthFailure.weakPassword
        }
        let metadata = body["data"] as? [String: Any] ?? [:]
        let metadataJSON = String(decoding: try JSONSerialization.data(withJSONObject: metadata), as: UTF8.self)
        let hash = try await UserPasswords.hash(password)
        if settings.confirmEmail {
            return try await signUpWithConfirmation(request, body, email: email, passwordHash: hash, metadataJSON: metadataJSON)
        }
        let userID: String? = try await pool.run { connection in
            try await connection.query(
                """
                INSERT INTO auth.users (email, encrypted_password, email_confirmed_at, raw_user_meta_data)
                VALUES ($1, $2, now(), $3::jsonb) ON CONFLICT (email) DO NOTHING RETURNING id
                """, [email, hash, metadataJSON]
            ).scalar
        }
        guard let userID else { throw AuthFailure(status: 422, code: "user_already_exists", message: "User already registered") }
        return .json(try await issueSession(userID: userID, aal: "aal1", amr: [["method": "password"]]))
    }

    private func passwordGrant(_ body: [String: Any], address: String) async throws -> PluginResponse {
        let email = try Self.email(body)
        guard let password = body["password"] as? String, !password.isEmpty else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "password is required")
        }
        try await AttemptThrottle.password.begin(account: email, address: address, pool: pool)
        let row = try await pool.run { connection in
            try await connection.query("SELECT id::text, encrypted_password FROM auth.users WHERE email = $1 AND (banned_until IS NULL OR banned_until < now())", [email]).rows
                .first
        }
        let matches = await verifyStoredPassword(password, against: row?[1] ?? UserPasswords.decoy)
        guard let row, let userID = row[0], matches else {
            throw AuthFailure(status: 400, code: "invalid_credentials", message: "Invalid login credentials")
        }
        // As GoTrue: only once the password is right does the answer say the address is unconfirmed.
        guard try await isEmailConfirmed(userID) else { throw AuthFailure(status: 400, code: "email_not_confirmed", message: "Email not confirmed") }
        await AttemptThrottle.password.succeeded(account: email, address: address, pool: pool)
        _ = try await pool.run { connection in try await connection.query("UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1::uuid", [userID]) }
        return .json(try await issueSession(userID: userID, aal: "aal1", amr: [["method": "password"]]))
    }

    /// Lowercase hex SHA-256 of `token` (refresh tokens are stored so; the throttle keys accounts so).
    static func hashToken(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func newRefreshToken() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        randombytes_buf(&bytes, bytes.count)
        return AuthEncoding.base64URL(bytes)
    }

    /// Rotation with reuse detection: a refresh token works once; presenting a used one
    /// revokes its whole session (every token descended from the same sign-in).
    private func refreshGrant(_ body: [String: Any]) async throws -> PluginResponse {
        guard let token = body["refresh_token"] as? String, !token.isEmpty, token.count <= 256 else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "refresh_token is required")
        }
        let hash = Self.hashToken(token)
        try await refuseBannedRefresh(tokenHash: hash)
        let fresh = Self.newRefreshToken()
        let outcome: (userID: String, sessionID: String, aal: String, amr: String)? = try await pool.run { connection in
            try await connection.transaction { connection in
                guard
                    let row = try await connection.query(
                        """
                        SELECT t.revoked::text, s.id::text, s.user_id::text, s.aal, s.amr::text, (s.revoked_at IS NOT NULL)::text
                        FROM auth.refresh_tokens t JOIN auth.sessions s ON s.id = t.session_id WHERE t.token_hash = $1 FOR UPDATE OF t
                        """, [hash]
                    ).rows.first
                else { return (nil, true) }
                if row[0] == "true" || row[5] == "true" {
                    try await connection.query("UPDATE auth.sessions SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1::uuid", [row[1]])
                    try await connection.query("UPDATE auth.refresh_tokens SET revoked = true WHERE session_id = $1::uuid", [row[1]])
                    return (nil, true)
                }
                try await connection.query("UPDATE auth.refresh_tokens SET revoked = true WHERE token_hash = $1", [hash])
                try await connection.query(
                    "INSERT INTO auth.refresh_tokens (token_hash, session_id, parent_hash) VALUES ($1, $2::uuid, $3)", [Self.hashToken(fresh), row[1], hash])
                try await connection.query("UPDATE auth.sessions SET updated_at = now() WHERE id = $1::uuid", [row[1]])
                return ((row[2] ?? "", row[1] ?? "", row[3] ?? "aal1", row[4] ?? "[]"), true)
            }
        }
        guard let outcome else {
            throw AuthFailure(status: 400, code: "refresh_token_not_found", message: "Invalid Refresh Token: Refresh Token Not Found or already used")
        }
        let amr = (try? JSONSerialization.jsonObject(with: Data(outcome.amr.utf8))) as? [[String: Any]] ?? []
        // A refresh is activity: the user counts once this month in the portal's active users (docs/hub.md).
        host.markActive("auth_users", member: outcome.userID, portal: portal)
        return .json(try await sessionJSON(userID: outcome.userID, sessionID: outcome.sessionID, aal: outcome.aal, amr: amr, refreshToken: fresh))
    }

    /// Creates a session and its first refresh token; returns GoTrue's session object.
    func issueSession(userID: String, aal: String, amr: [[String: Any]], factorID: String? = nil) async throws -> [String: Any] {
        let now = Int(Date().timeIntervalSince1970)
        let stamped = amr.map { entry -> [String: Any] in
            var entry = entry
            entry["timestamp"] = now
            return entry
        }
        let amrJSON = String(decoding: try JSONSerialization.data(withJSONObject: stamped), as: UTF8.self)
        let refresh = Self.newRefreshToken()
        let sessionID: String = try await pool.run { connection in
            try await connection.transaction { connection in
                let id =
                    try await connection.query(
                        "INSERT INTO auth.sessions (user_id, aal, amr, factor_id) VALUES ($1::uuid, $2, $3::jsonb, $4::uuid) RETURNING id::text",
                        [userID, aal, amrJSON, factorID]
                    ).scalar ?? ""
                try await connection.query("INSERT INTO auth.refresh_tokens (token_hash, session_id) VALUES ($1, $2::uuid)", [Self.hashToken(refresh), id])
                return (id, true)
            }
        }
        // Every sign-in (password, PKCE, verify, ...) counts the user once this month as active (docs/hub.md).
        host.markActive("auth_users", member: userID, portal: portal)
        return try await sessionJSON(userID: userID, sessionID: sessionID, aal: aal, amr: stamped, refreshToken: refresh)
    }

    func sessionJSON(userID: String, sessionID: String, aal: String, amr: [[String: Any]], refreshToken: String) async throws -> [String: Any] {
        let user = try await userJSON(userID)
        let now = Int(Date().timeIntervalSince1970)
        // A row given role service_role by hand (the admin API refuses it) still signs in as a user.
        let role = (user["role"] as? String).flatMap { $0.isEmpty || $0 == "service_role" ? nil : $0 } ?? "authenticated"
        let claims: [String: Any] = [
            "aud": user["aud"] ?? "authenticated", "iss": "meltybase/\(portal.name)/auth/v1", "sub": userID, "role": role,
            "email": user["email"] ?? NSNull(), "phone": "", "app_metadata": user["app_metadata"] ?? [:], "user_metadata": user["user_metadata"] ?? [:],
            "aal": aal, "amr": amr, "session_id": sessionID, "is_anonymous": user["is_anonymous"] ?? false, "iat": now, "exp": now + Self.accessTokenLifetime,
        ]
        // The claims are still built as JSONSerialization values here (the GoTrue bodies are
        // not converted yet); the SDK takes them typed.
        guard let typedClaims = JSONValue.object(json: try JSONSerialization.data(withJSONObject: claims)) else {
            throw AuthFailure(status: 500, code: "unexpected_failure", message: "the session claims are not a JSON object")
        }
        let token = try await host.signPortalJWT(claims: typedClaims, portal: portal)
        return [
            "access_token": token, "token_type": "bearer", "expires_in": Self.accessTokenLifetime, "expires_at": now + Self.accessTokenLifetime,
            "refresh_token": refreshToken, "user": user,
        ]
    }

    // MARK: the user

    /// The GoTrue user object of `u` (the columns of `auth.users`), for ``userJSON(_:)`` and the admin API's lists.
    static let userObjectSQL = """
        json_build_object(
          'id', u.id, 'aud', u.aud, 'role', u.role, 'email', u.email, 'phone', '',
          'email_confirmed_at', u.email_confirmed_at, 'confirmed_at', u.email_confirmed_at, 'last_sign_in_at', u.last_sign_in_at,
          'confirmation_sent_at', u.confirmation_sent_at, 'recovery_sent_at', u.recovery_sent_at,
          'email_change_sent_at', u.email_change_sent_at, 'new_email', nullif(u.email_change, ''), 'invited_at', u.invited_at,
          'banned_until', u.banned_until, 'deleted_at', u.deleted_at,
          'app_metadata', u.raw_app_meta_data, 'user_metadata', u.raw_user_meta_data, 'identities', '[]'::json,
          'created_at', u.created_at, 'updated_at', u.updated_at, 'is_anonymous', u.is_anonymous,
          'factors', (SELECT coalesce(json_agg(json_build_object('id', f.id, 'friendly_name', f.friendly_name, 'factor_type', f.factor_type,
                        'status', f.status, 'created_at', f.created_at, 'updated_at', f.updated_at) ORDER BY f.created_at), '[]')
                      FROM auth.mfa_factors f WHERE f.user_id = u.id))
        """

    func userJSON(_ userID: String) async throws -> [String: Any] {
        let text: String? = try await pool.run { connection in
            try await connection.query(
                "SELECT " + Self.userObjectSQL + "::text FROM auth.users u WHERE u.id = $1::uuid", [userID]
            ).scalar
        }
        guard let text, let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw AuthFailure(status: 404, code: "user_not_found", message: "User not found")
        }
        return object
    }

    func liveSession(_ user: UserSession) async throws {
        let live: String? = try await pool.run { connection in
            try await connection.query("SELECT 1 FROM auth.sessions WHERE id = $1::uuid AND user_id = $2::uuid AND revoked_at IS NULL", [user.sessionID, user.userID]).scalar
        }
        guard live != nil else { throw AuthFailure(status: 403, code: "session_not_found", message: "Session from session_id claim in JWT does not exist") }
    }

    private func updateUser(_ user: UserSession, _ body: [String: Any], redirectTo: String? = nil) async throws -> PluginResponse {
        try await liveSession(user)
        var assignments: [String] = []
        var parameters: [String?] = [user.userID]
        if let data = body["data"] {
            guard let object = data as? [String: Any] else { throw AuthFailure(status: 400, code: "validation_failed", message: "data must be an object") }
            parameters.append(String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self))
            assignments.append("raw_user_meta_data = raw_user_meta_data || $\(parameters.count)::jsonb")
        }
        if body["email"] != nil && !(body["email"] is NSNull) {
            let newEmail = try Self.mailAddress(body)
            if settings.confirmEmail {
                // The new address confirms first (AuthHandler+Email.swift); nothing changes until then.
                try await requestEmailChange(userID: user.userID, newEmail: newEmail, redirectTo: redirectTo, pkce: try FlowStates.challenge(body))
            } else {
                parameters.append(newEmail)
                assignments.append("email = $\(parameters.count)")
                // An anonymous user who adds an address becomes a permanent one.
                assignments.append("is_anonymous = false")
                assignments.append("email_confirmed_at = coalesce(email_confirmed_at, now())")
            }
        }
        if let password = body["password"] {
            guard let text = password as? String, text.count >= 8, text.utf8.count <= 1024 else {
                throw AuthFailure.weakPassword
            }
            if user.aal != "aal2", try await hasVerifiedFactor(user.userID) {
                throw AuthFailure(status: 403, code: "insufficient_aal", message: "AAL2 session is required to update the password of a user with MFA")
            }
            parameters.append(try await UserPasswords.hash(text))
            assignments.append("encrypted_password = $\(parameters.count)")
        }
        if !assignments.isEmpty {
            let statement = "UPDATE auth.users SET " + assignments.joined(separator: ", ") + ", updated_at = now() WHERE id = $1::uuid"
            let values = parameters
            do {
                _ = try await pool.run { connection in try await connection.query(statement, values) }
            } catch let error as PostgresError where error.sqlState == "23505" {
                throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered")
            }
        }
        return .json(try await userJSON(user.userID))
    }

    private func logout(_ user: UserSession, scope: String) async throws -> PluginResponse {
        let condition: String
        // Every form names both parameters ($2 may be unused), so one bind fits all.
        switch scope {
        case "global": condition = "user_id = $1::uuid AND $2::uuid IS NOT NULL"
        case "local": condition = "user_id = $1::uuid AND id = $2::uuid"
        case "others": condition = "user_id = $1::uuid AND id <> $2::uuid"
        default: throw AuthFailure(status: 400, code: "validation_failed", message: "scope must be global, local or others")
        }
        _ = try await pool.run { connection in
            try await connection.transaction { connection in
                try await connection.query("UPDATE auth.sessions SET revoked_at = now() WHERE revoked_at IS NULL AND " + condition, [user.userID, user.sessionID])
                try await connection.query(
                    "UPDATE auth.refresh_tokens t SET revoked = true FROM auth.sessions s WHERE s.id = t.session_id AND s.revoked_at IS NOT NULL AND s.user_id = $1::uuid",
                    [user.userID])
                return ((), true)
            }
        }
        return PluginResponse(status: 204)
    }

    // MARK: TOTP factors

    func hasVerifiedFactor(_ userID: String) async throws -> Bool {
        try await pool.run { connection in
            try await connection.query("SELECT 1 FROM auth.mfa_factors WHERE user_id = $1::uuid AND status = 'verified'", [userID]).scalar != nil
        }
    }

    private func enroll(_ user: UserSession, _ body: [String: Any]) async throws -> PluginResponse {
        try await liveSession(user)
        guard (body["factor_type"] as? String ?? "totp") == "totp" else {
            throw AuthFailure(status: 422, code: "mfa_factor_type_unsupported", message: "only factor_type totp is supported")
        }
        let friendly = body["friendly_name"] as? String
        if let friendly, friendly.count > 128 { throw AuthFailure(status: 400, code: "validation_failed", message: "friendly_name is too long") }
        var secretBytes = TOTP.generateSecret()
        defer { sodium_memzero(&secretBytes, secretBytes.count) }
        let secret = Base32.encode(secretBytes)
        // The seed is stored sealed by the kernel, bound to this factor and user (never in plaintext).
        let newFactorID = UUID().uuidString.lowercased()
        let sealed = try host.sealSecret(Array(secret.utf8), portal: portal, context: Self.factorSecretContext(factorID: newFactorID, userID: user.userID))
        let factorID: String? = try await pool.run { connection in
            if let friendly, try await connection.query("SELECT 1 FROM auth.mfa_factors WHERE user_id = $1::uuid AND friendly_name = $2", [user.userID, friendly]).scalar != nil {
                return nil
            }
            return try await connection.query(
                "INSERT INTO auth.mfa_factors (id, user_id, friendly_name, secret) VALUES ($1::uuid, $2::uuid, $3, $4) RETURNING id::text",
                [newFactorID, user.userID, friendly, sealed]
            ).scalar
        }
        guard let factorID else {
            throw AuthFailure(status: 422, code: "mfa_factor_name_conflict", message: "A factor with the friendly name \"\(friendly ?? "")\" already exists")
        }
        let email = (try await userJSON(user.userID))["email"] as? String ?? user.userID
        let issuer = (body["issuer"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? "MeltyBase \(portal.name)"
        let uri = TOTP.provisioningURI(secret: secretBytes, account: email, issuer: issuer)
        // As GoTrue: the bare SVG document; supabase-js and supabase-py prepend
        // `data:image/svg+xml;utf-8,` themselves. A URI past version 10 leaves it empty.
        let qrCode = (try? QRCode(text: uri).svg()) ?? ""
        return .json(
            [
                "id": factorID, "type": "totp", "friendly_name": friendly ?? "",
                "totp": ["qr_code": qrCode, "secret": secret, "uri": uri],
            ] as [String: Any])
    }

    /// What a factor's sealed seed is bound to: copied onto another factor or user, it does not open.
    private static func factorSecretContext(factorID: String, userID: String) -> String {
        "auth.mfa_factors:\(factorID):\(userID)"
    }

    private func factor(_ user: UserSession, _ factorID: String) async throws -> (sealedSecret: String, status: String, lastStep: Int64) {
        guard UUID(uuidString: factorID) != nil else { throw AuthFailure(status: 404, code: "mfa_factor_not_found", message: "Factor not found") }
        let row = try await pool.run { connection in
            try await connection.query("SELECT secret, status, last_step::text FROM auth.mfa_factors WHERE id = $1::uuid AND user_id = $2::uuid", [factorID, user.userID]).rows
                .first
        }
        guard let row, let secret = row[0] else { throw AuthFailure(status: 404, code: "mfa_factor_not_found", message: "Factor not found") }
        return (secret, row[1] ?? "unverified", Int64(row[2] ?? "0") ?? 0)
    }

    private func challenge(_ user: UserSession, factorID: String) async throws -> PluginResponse {
        try await liveSession(user)
        _ = try await factor(user, factorID)
        let id: String = try await pool.run { connection in
            try await connection.query("INSERT INTO auth.mfa_challenges (factor_id) VALUES ($1::uuid) RETURNING id::text", [factorID]).scalar ?? ""
        }
        return .json(["id": id, "type": "totp", "expires_at": Int(Date().timeIntervalSince1970) + 300] as [String: Any])
    }

    private func verify(_ user: UserSession, factorID: String, _ body: [String: Any], address: String) async throws -> PluginResponse {
        try await liveSession(user)
        let factor = try await factor(user, factorID)
        guard let challengeID = body["challenge_id"] as? String, UUID(uuidString: challengeID) != nil else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "challenge_id is required")
        }
        guard let code = (body["code"] as? String)?.trimmingCharacters(in: .whitespaces), code.count == 6, code.allSatisfy({ ("0"..."9").contains($0) }) else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "code must be the 6 digits from the authenticator app")
        }
        try await AttemptThrottle.mfa.begin(account: user.userID, address: address, pool: pool)
        let secret: [UInt8]
        do {
            var seed = try host.openSecret(factor.sealedSecret, portal: portal, context: Self.factorSecretContext(factorID: factorID, userID: user.userID))
            defer { sodium_memzero(&seed, seed.count) }
            guard let decoded = Base32.decode(String(decoding: seed, as: UTF8.self)) else { throw PluginError.invalid("not base32") }
            secret = decoded
        } catch {
            host.log(.error, "auth: the TOTP seed of factor \(factorID) does not open: \(error)", portal: portal)
            throw AuthFailure(status: 500, code: "unexpected_failure", message: "the stored factor cannot be read; the server log says why")
        }
        let valid: Bool = try await pool.run { connection in
            try await connection.transaction { connection in
                guard
                    try await connection.query(
                        """
                        UPDATE auth.mfa_challenges SET verified_at = now()
                        WHERE id = $1::uuid AND factor_id = $2::uuid AND verified_at IS NULL AND created_at > now() - interval '5 minutes' RETURNING 1
                        """, [challengeID, factorID]
                    ).scalar != nil
                else {
                    throw AuthFailure(status: 422, code: "mfa_challenge_expired", message: "MFA challenge has expired, was used, or does not belong to this factor")
                }
                let lastStep = Int64(try await connection.query("SELECT last_step::text FROM auth.mfa_factors WHERE id = $1::uuid FOR UPDATE", [factorID]).scalar ?? "0") ?? 0
                guard let step = TOTP(secret: secret).matchingStep(code, at: Date(), after: lastStep) else { return (false, false) }
                try await connection.query("UPDATE auth.mfa_factors SET last_step = $2, status = 'verified', updated_at = now() WHERE id = $1::uuid", [factorID, String(step)])
                return (true, true)
            }
        }
        guard valid else { throw AuthFailure(status: 422, code: "mfa_verification_failed", message: "Invalid TOTP code entered") }
        await AttemptThrottle.mfa.succeeded(account: user.userID, address: address, pool: pool)
        let amrRow: String? = try await pool.run { connection in
            try await connection.query("SELECT amr::text FROM auth.sessions WHERE id = $1::uuid", [user.sessionID]).scalar
        }
        var amr = (try? JSONSerialization.jsonObject(with: Data((amrRow ?? "[]").utf8))) as? [[String: Any]] ?? []
        amr.append(["method": "totp"])
        return .json(
            try await issueSession(
                userID: user.userID, aal: "aal2",
                amr: amr.map {
                    var entry = $0
                    entry.removeValue(forKey: "timestamp")
                    return entry
                }, factorID: factorID))
    }

    private func unenroll(_ user: UserSession, factorID: String) async throws -> PluginResponse {
        try await liveSession(user)
        let factor = try await factor(user, factorID)
        if factor.status == "verified" && user.aal != "aal2" {
            throw AuthFailure(status: 403, code: "insufficient_aal", message: "AAL2 required to unenroll a verified factor")
        }
        _ = try await pool.run { connection in try await connection.query("DELETE FROM auth.mfa_factors WHERE id = $1::uuid", [factorID]) }
        return .json(["id": factorID])
    }
}
