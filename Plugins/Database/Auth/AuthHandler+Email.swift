import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres

/// The throttle of `/verify`.
extension AttemptThrottle {
    /// Redemptions of mailed codes and links (`/verify`): a wrong code is a guess.
    static let otp = AttemptThrottle(scope: "otp", accountLimit: 10, addressLimit: 30)
}

/// Links and one-time codes by email: confirmation, magic link, recovery, invitation,
/// email change; `/verify` redeems them.
extension AuthHandler {
    /// The tables this part keeps in each portal's `auth` schema (idempotent).
    static let emailSchema = OneTimeTokens.schema + "\n" + MailTemplates.schema + "\n" + MailRateLimit.schema + "\n" + FlowStates.schema

    /// The verification types `/verify` accepts and the token kinds each redeems.
    static let verificationKinds: [String: [OneTimeTokens.Kind]] = [
        "signup": [.confirmation], "invite": [.confirmation], "magiclink": [.recovery], "recovery": [.recovery],
        "email_change": [.emailChangeNew, .emailChangeCurrent], "email": [.confirmation, .recovery],
    ]

    // MARK: request values

    /// A string member of the body: nil when absent or null; 400 when it is another type,
    /// holds a control character or is longer than `limit` bytes.
    static func text(_ body: [String: Any], _ key: String, limit: Int = 1024) throws -> String? {
        guard let value = body[key], !(value is NSNull) else { return nil }
        guard let text = value as? String else { throw AuthFailure(status: 400, code: "validation_failed", message: "\(key) must be a string") }
        guard text.utf8.count <= limit, !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "\(key) is too long or holds a control character")
        }
        return text
    }

    /// `email(_:)` for an address mail goes to: no control characters either.
    static func mailAddress(_ body: [String: Any], key: String = "email") throws -> String {
        guard let raw = try text(body, key, limit: 320), !raw.isEmpty else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "\(key) is required")
        }
        return try email(["email": raw])
    }

    /// The user metadata of `data` as JSON text (`{}` when absent).
    static func metadataJSON(_ body: [String: Any]) throws -> String {
        guard let data = body["data"], !(data is NSNull) else { return "{}" }
        guard let object = data as? [String: Any] else { throw AuthFailure(status: 400, code: "validation_failed", message: "data must be an object") }
        let encoded = try JSONSerialization.data(withJSONObject: object)
        guard encoded.count <= 64 * 1024 else { throw AuthFailure(status: 400, code: "validation_failed", message: "data is larger than 64 KiB") }
        return String(decoding: encoded, as: UTF8.self)
    }

    /// Where a link sends the user: `redirect_to` (query, else body) when allowed, else `site_url`.
    func redirectTarget(_ request: PluginRequest, _ body: [String: Any]) -> String {
        settings.redirect(request.queryItems["redirect_to"] ?? (body["redirect_to"] as? String))
    }

    /// `<external_url>/p/<portal>/auth/v1/verify?token=…&type=…&redirect_to=…` (a path
    /// without `external_url`, which only `generate_link` can meet).
    func actionLink(hash: String, type: String, redirectTo: String) -> String {
        let encoded = AuthEncoding.queryValue(redirectTo)
        return "\(settings.externalURL ?? "")/p/\(portal.name)/auth/v1/verify?token=\(hash)&type=\(type)&redirect_to=\(encoded)"
    }

    /// The mailer, or 422 `email_not_configured` naming what the operator sets (a 4xx: the
    /// request cannot succeed on this server until its configuration changes).
    func requireMailer(_ purpose: String) throws -> AuthMailer {
        guard let mailer else {
            throw AuthFailure(
                status: 422, code: "email_not_configured",
                message:
                    "Error sending \(purpose) email: this server has no mail configured; the operator sets [plugins.database.config.smtp] and external_url (docs/database.md)"
            )
        }
        return mailer
    }

    // MARK: tokens and mail

    /// A fresh token for `userID`: its code and hash (the hash bound to `address`), stored,
    /// with `sentColumn` of the user stamped.
    /// A token of a PKCE flow (`pkce`) is stored with ``FlowStates/linkPrefix`` in front of its
    /// hash, so only the link as mailed redeems it, and the server, not the link, knows it
    /// belongs to a flow: a link with the prefix stripped matches nothing.
    func newToken(userID: String, kind: OneTimeTokens.Kind, address: String, sentColumn: String?, pkce: Bool = false) async throws -> (code: String, hash: String) {
        for attempt in 1...3 {
            let code = OneTimeTokens.newCode()
            let hash = (pkce ? FlowStates.linkPrefix : "") + OneTimeTokens.hash(email: address, code: code)
            do {
                try await pool.run { connection in
                    try await connection.transaction { connection in
                        try await OneTimeTokens.store(userID: userID, kind: kind, hash: hash, relatesTo: address, on: connection)
                        if let sentColumn {
                            try await connection.query("UPDATE auth.users SET \(sentColumn) = now(), updated_at = now() WHERE id = $1::uuid", [userID])
                        }
                        return ((), true)
                    }
                }
                return (code, hash)
            } catch let error as PostgresError where error.sqlState == "23505" && attempt < 3 {
                continue  // the same hash is live for another kind of this user: draw again
            }
        }
        throw AuthFailure(status: 500, code: "unexpected_failure", message: "no one-time token could be stored")
    }

    /// What one mail needs.
    struct Delivery {
        /// Which template.
        var template: MailTemplates.Kind
        /// The link's `type` (signup, invite, magiclink, recovery, email_change).
        var linkType: String
        /// The token stored.
        var tokenKind: OneTimeTokens.Kind
        /// Whose token.
        var userID: String
        /// The recipient (the hash binds to it).
        var to: String
        /// `{{ .Email }}`: the user's current address.
        var email: String
        /// `{{ .NewEmail }}`.
        var newEmail: String = ""
        /// Where the link lands (already checked against the allow list).
        var redirectTo: String
        /// The `auth.users` column stamped with the send time (a constant, never request data).
        var sentColumn: String?
        /// The mail's name in errors and logs.
        var purpose: String
        /// The PKCE challenge the request sent: the link then ends in `?code=`.
        var pkce: FlowStates.Challenge? = nil
    }

    /// Takes a rate-limit slot, stores a new token, renders the portal's template and sends
    /// it; on failure the slot and the token are given back.
    func deliver(_ delivery: Delivery) async throws {
        let mailer = try requireMailer(delivery.purpose)
        let limit = MailRateLimit(perHour: settings.emailRateLimitPerHour, minIntervalSeconds: settings.emailMinIntervalSeconds)
        let slot = try await limit.reserve(address: delivery.to, pool: pool)
        var stored: String?
        do {
            let token = try await newToken(
                userID: delivery.userID, kind: delivery.tokenKind, address: delivery.to, sentColumn: delivery.sentColumn, pkce: delivery.pkce != nil)
            stored = token.hash
            if let pkce = delivery.pkce {
                try await FlowStates.begin(userID: delivery.userID, method: delivery.linkType, pkce, pool: pool)
            }
            let template: [String?] = try await pool.run { connection in
                try await connection.query("SELECT subject, body_html FROM auth.email_templates WHERE kind = $1", [delivery.template.rawValue]).rows.first ?? [nil, nil]
            }
            let metadata: String? = try await pool.run { connection in
                try await connection.query("SELECT raw_user_meta_data::text FROM auth.users WHERE id = $1::uuid", [delivery.userID]).scalar
            }
            var data: [String: String] = [:]
            if let metadata, let object = JSONValue.object(json: Array(metadata.utf8)) {
                for (key, value) in object {
                    switch value {
                    case .string(let text): data[key] = text
                    case .number, .bool: data[key] = (try? JSONValue.serialize(value)).map { String(decoding: $0, as: UTF8.self) }
                    default: break
                    }
                }
            }
            let values = MailTemplates.Values(
                confirmationURL: actionLink(hash: token.hash, type: delivery.linkType, redirectTo: delivery.redirectTo), token: token.code,
                tokenHash: token.hash, siteURL: settings.siteURL, email: delivery.email, newEmail: delivery.newEmail, redirectTo: delivery.redirectTo,
                data: data)
            let rendered = MailTemplates.render(delivery.template, subject: template.first ?? nil, body: template.dropFirst().first ?? nil, values: values)
            try await mailer.send(to: delivery.to, rendered, purpose: delivery.purpose)
        } catch {
            await limit.release(slot, pool: pool)
            if let stored {
                _ = try? await pool.run { connection in try await connection.query("DELETE FROM auth.one_time_tokens WHERE token_hash = $1", [stored]) }
            }
            throw error
        }
        host.count("auth_emails_sent", portal: portal)
        try? await host.audit(
            action: "auth.email_sent", target: "user:\(delivery.userID)", details: ["kind": .string(delivery.template.rawValue)], portal: portal)
    }

    /// The user with `email` (not soft-deleted): id, whether confirmed, whether invited.
    func userByEmail(_ email: String) async throws -> (id: String, confirmed: Bool)? {
        let row = try await pool.run { connection in
            try await connection.query(
                "SELECT id::text, (email_confirmed_at IS NOT NULL)::text FROM auth.users WHERE email = $1 AND deleted_at IS NULL", [email]
            ).rows.first
        }
        guard let row, let id = row[0] else { return nil }
        return (id, row[1] == "true")
    }

    // MARK: sign-up with confirmation, anonymous sign-in

    /// Whether a `/signup` body asks for an anonymous user (no email, phone nor password).
    static func isAnonymousSignUp(_ body: [String: Any]) -> Bool {
        ["email", "phone", "password"].allSatisfy { key in
            guard let value = body[key] else { return true }
            return value is NSNull || (value as? String)?.isEmpty == true
        }
    }

    /// `POST /signup` without credentials: an anonymous user and its session.
    func anonymousSignUp(_ body: [String: Any]) async throws -> PluginResponse {
        guard settings.anonymousUsers else {
            throw AuthFailure(status: 422, code: "anonymous_provider_disabled", message: "Anonymous sign-ins are disabled")
        }
        let metadata = try Self.metadataJSON(body)
        let userID: String? = try await pool.run { connection in
            try await connection.query(
                """
                INSERT INTO auth.users (is_anonymous, raw_user_meta_data, raw_app_meta_data)
                VALUES (true, $1::jsonb, '{"provider": "anonymous", "providers": ["anonymous"]}') RETURNING id::text
                """, [metadata]
            ).scalar
        }
        guard let userID else { throw AuthFailure(status: 500, code: "unexpected_failure", message: "the anonymous user was not created") }
        return .json(try await issueSession(userID: userID, aal: "aal1", amr: [["method": "anonymous"]]))
    }

    /// `POST /signup` with `confirm_email` on: an unconfirmed user and a confirmation mail,
    /// no session. An address already confirmed gets GoTrue's obfuscated answer (and no
    /// mail), so the answer does not tell whether it is registered.
    func signUpWithConfirmation(
        _ request: PluginRequest, _ body: [String: Any], email: String, passwordHash: String, metadataJSON: String
    ) async throws
        -> PluginResponse
    {
        _ = try requireMailer("confirmation")
        let redirect = redirectTarget(request, body)
        let pkce = try FlowStates.challenge(body)
        if let existing = try await userByEmail(email) {
            if existing.confirmed { return .json(Self.obfuscatedUser(email: email, metadataJSON: metadataJSON)) }
            // The newest sign-up's password wins: whoever registered the address first (maybe
            // not its owner) must not keep a password the owner's confirmation would activate.
            _ = try await pool.run { connection in
                try await connection.query(
                    """
                    UPDATE auth.users SET encrypted_password = $2, raw_user_meta_data = $3::jsonb, updated_at = now()
                    WHERE id = $1::uuid AND email_confirmed_at IS NULL
                    """, [existing.id, passwordHash, metadataJSON])
            }
            try await deliver(
                Delivery(
                    template: .confirmation, linkType: "signup", tokenKind: .confirmation, userID: existing.id, to: email, email: email, redirectTo: redirect,
                    sentColumn: "confirmation_sent_at", purpose: "confirmation", pkce: pkce))
            return .json(try await userJSON(existing.id))
        }
        let userID: String? = try await pool.run { connection in
            try await connection.query(
                """
                INSERT INTO auth.users (email, encrypted_password, raw_user_meta_data)
                VALUES ($1, $2, $3::jsonb) ON CONFLICT (email) DO NOTHING RETURNING id::text
                """, [email, passwordHash, metadataJSON]
            ).scalar
        }
        guard let userID else { return .json(Self.obfuscatedUser(email: email, metadataJSON: metadataJSON)) }
        do {
            try await deliver(
                Delivery(
                    template: .confirmation, linkType: "signup", tokenKind: .confirmation, userID: userID, to: email, email: email, redirectTo: redirect,
                    sentColumn: "confirmation_sent_at", purpose: "confirmation", pkce: pkce))
        } catch {
            // As GoTrue, which rolls the sign-up back when the mail cannot go out.
            _ = try? await pool.run { connection in
                try await connection.query("DELETE FROM auth.users WHERE id = $1::uuid AND email_confirmed_at IS NULL", [userID])
            }
            throw error
        }
        return .json(try await userJSON(userID))
    }

    /// GoTrue's `sanitizeUser`: what a sign-up of an already confirmed address answers.
    static func obfuscatedUser(email: String, metadataJSON: String) -> [String: Any] {
        let now = ISO8601DateFormatter().string(from: Date())
        let metadata = (try? JSONSerialization.jsonObject(with: Data(metadataJSON.utf8))) as? [String: Any] ?? [:]
        return [
            "id": UUID().uuidString.lowercased(), "aud": "authenticated", "role": "", "email": email, "phone": "", "confirmation_sent_at": now,
            "app_metadata": ["provider": "email", "providers": ["email"]], "user_metadata": metadata, "identities": [] as [Any], "created_at": now,
            "updated_at": now, "is_anonymous": false,
        ]
    }

    /// Whether the user's address is confirmed (password sign-in needs it).
    func isEmailConfirmed(_ userID: String) async throws -> Bool {
        try await pool.run { connection in
            try await connection.query("SELECT 1 FROM auth.users WHERE id = $1::uuid AND email_confirmed_at IS NOT NULL", [userID]).scalar != nil
        }
    }

    // MARK: email change

    /// `PUT /user {email}` with `confirm_email` on: the new address gets a link and code
    /// (type `email_change`); the address changes when it is redeemed.
    func requestEmailChange(userID: String, newEmail: String, redirectTo: String?, pkce: FlowStates.Challenge? = nil) async throws {
        _ = try requireMailer("email change")
        let row = try await pool.run { connection in
            try await connection.query("SELECT coalesce(email, '') FROM auth.users WHERE id = $1::uuid", [userID]).rows.first
        }
        let current = row?[0] ?? ""
        guard current != newEmail else { return }
        if try await userByEmail(newEmail) != nil {
            throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered")
        }
        _ = try await pool.run { connection in
            try await connection.query("UPDATE auth.users SET email_change = $2, updated_at = now() WHERE id = $1::uuid", [userID, newEmail])
        }
        try await deliver(
            Delivery(
                template: .emailChange, linkType: "email_change", tokenKind: .emailChangeNew, userID: userID, to: newEmail, email: current, newEmail: newEmail,
                redirectTo: settings.redirect(redirectTo), sentColumn: "email_change_sent_at", purpose: "email change", pkce: pkce))
    }

    // MARK: routes

    /// `POST /otp {email, create_user, data}`: a magic link and code to sign in (a
    /// confirmation for an unconfirmed or new user). Answers `{}` whether or not the
    /// address is registered.
    func sendOneTimeCode(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        if body["phone"] != nil && !(body["phone"] is NSNull) && body["email"] == nil {
            throw AuthFailure(status: 400, code: "sms_send_failed", message: "Phone sign-in is not supported; use email")
        }
        let email = try Self.mailAddress(body)
        let createUser = body["create_user"] as? Bool ?? true
        let metadata = try Self.metadataJSON(body)
        _ = try requireMailer("magic link")
        let redirect = redirectTarget(request, body)
        let pkce = try FlowStates.challenge(body)
        var user = try await userByEmail(email)
        if user == nil {
            guard createUser else { return .json([String: Any]()) }
            let id: String? = try await pool.run { connection in
                try await connection.query(
                    """
                    INSERT INTO auth.users (email, raw_user_meta_data, email_confirmed_at)
                    VALUES ($1, $2::jsonb, CASE WHEN $3 THEN NULL ELSE now() END) ON CONFLICT (email) DO NOTHING RETURNING id::text
                    """, [email, metadata, settings.confirmEmail ? "true" : "false"]
                ).scalar
            }
            if let id {
                do {
                    try await sendSignInMail(userID: id, email: email, confirmed: !settings.confirmEmail, redirect: redirect, pkce: pkce)
                } catch {
                    _ = try? await pool.run { connection in
                        try await connection.query("DELETE FROM auth.users WHERE id = $1::uuid AND last_sign_in_at IS NULL", [id])
                    }
                    throw error
                }
                return .json([String: Any]())
            }
            user = try await userByEmail(email)
        }
        guard let user else { return .json([String: Any]()) }
        try await sendSignInMail(userID: user.id, email: email, confirmed: user.confirmed, redirect: redirect, pkce: pkce)
        return .json([String: Any]())
    }

    private func sendSignInMail(userID: String, email: String, confirmed: Bool, redirect: String, pkce: FlowStates.Challenge?) async throws {
        if confirmed {
            try await deliver(
                Delivery(
                    template: .magicLink, linkType: "magiclink", tokenKind: .recovery, userID: userID, to: email, email: email, redirectTo: redirect,
                    sentColumn: "recovery_sent_at", purpose: "magic link", pkce: pkce))
        } else {
            try await deliver(
                Delivery(
                    template: .confirmation, linkType: "signup", tokenKind: .confirmation, userID: userID, to: email, email: email, redirectTo: redirect,
                    sentColumn: "confirmation_sent_at", purpose: "confirmation", pkce: pkce))
        }
    }

    /// `POST /recover {email}`: a recovery link and code; `{}` whether or not the address is registered.
    func recover(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        let email = try Self.mailAddress(body)
        _ = try requireMailer("recovery")
        let pkce = try FlowStates.challenge(body)
        guard let user = try await userByEmail(email) else { return .json([String: Any]()) }
        try await deliver(
            Delivery(
                template: .recovery, linkType: "recovery", tokenKind: .recovery, userID: user.id, to: email, email: email,
                redirectTo: redirectTarget(request, body), sentColumn: "recovery_sent_at", purpose: "recovery", pkce: pkce))
        return .json([String: Any]())
    }

    /// `POST /resend {type: signup | email_change, email}`: a new token replaces the live one.
    func resend(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        guard let type = try Self.text(body, "type", limit: 32) else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "type is required: signup or email_change")
        }
        switch type {
        case "signup", "email_change": break
        case "sms", "phone_change": throw AuthFailure(status: 400, code: "validation_failed", message: "Phone sign-in is not supported; resend works for email")
        default: throw AuthFailure(status: 400, code: "validation_failed", message: "Missing one of these types: signup, email_change")
        }
        let email = try Self.mailAddress(body)
        _ = try requireMailer(type == "signup" ? "confirmation" : "email change")
        let redirect = redirectTarget(request, body)
        guard let user = try await userByEmail(email) else { return .json([String: Any]()) }
        if type == "signup" {
            guard !user.confirmed else { return .json([String: Any]()) }
            try await deliver(
                Delivery(
                    template: .confirmation, linkType: "signup", tokenKind: .confirmation, userID: user.id, to: email, email: email, redirectTo: redirect,
                    sentColumn: "confirmation_sent_at", purpose: "confirmation"))
        } else {
            let pending: String? = try await pool.run { connection in
                try await connection.query("SELECT nullif(email_change, '') FROM auth.users WHERE id = $1::uuid", [user.id]).scalar
            }
            guard let pending else { return .json([String: Any]()) }
            try await deliver(
                Delivery(
                    template: .emailChange, linkType: "email_change", tokenKind: .emailChangeNew, userID: user.id, to: pending, email: email, newEmail: pending,
                    redirectTo: redirect, sentColumn: "email_change_sent_at", purpose: "email change"))
        }
        return .json([String: Any]())
    }

    /// `POST /invite {email, data}` (service role): creates the user (`invited_at`) and
    /// mails the invitation; following it signs the user in.
    func invite(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        try requireServiceRole(request)
        let email = try Self.mailAddress(body)
        let metadata = try Self.metadataJSON(body)
        _ = try requireMailer("invite")
        let userID = try await invitedUser(email: email, metadataJSON: metadata)
        try await deliver(
            Delivery(
                template: .invite, linkType: "invite", tokenKind: .confirmation, userID: userID, to: email, email: email,
                redirectTo: redirectTarget(request, body), sentColumn: "invited_at", purpose: "invite"))
        try? await host.audit(action: "auth.user_invited", target: "user:\(userID)", details: [:], portal: portal)
        return .json(try await userJSON(userID))
    }

    /// The user an invitation is for: created, or the existing unconfirmed one; 422 when confirmed.
    private func invitedUser(email: String, metadataJSON: String) async throws -> String {
        if let existing = try await userByEmail(email) {
            guard !existing.confirmed else {
                throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered")
            }
            return existing.id
        }
        let id: String? = try await pool.run { connection in
            try await connection.query(
                "INSERT INTO auth.users (email, raw_user_meta_data, invited_at) VALUES ($1, $2::jsonb, now()) ON CONFLICT (email) DO NOTHING RETURNING id::text",
                [email, metadataJSON]
            ).scalar
        }
        guard let id else { throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered") }
        return id
    }

    /// `POST /admin/generate_link {type, email, password, new_email, data}` (service role):
    /// the link and code a mail would carry, for the caller's own mail; sends nothing.
    func generateLink(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        try requireServiceRole(request)
        guard let type = try Self.text(body, "type", limit: 32) else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "type is required")
        }
        let email = try Self.mailAddress(body)
        let metadata = try Self.metadataJSON(body)
        let redirect = redirectTarget(request, body)
        let existing = try await userByEmail(email)
        let userID: String
        let kind: OneTimeTokens.Kind
        var address = email
        var linkType = type
        var sentColumn: String?
        switch type {
        case "signup":
            guard let password = try Self.text(body, "password", limit: 1024), !password.isEmpty else {
                throw AuthFailure(status: 422, code: "validation_failed", message: "Signup requires a valid password")
            }
            guard password.count >= 8 else { throw AuthFailure.weakPassword }
            if let existing {
                guard !existing.confirmed else {
                    throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered")
                }
                userID = existing.id
            } else {
                let hash = try await UserPasswords.hash(password)
                let id: String? = try await pool.run { connection in
                    try await connection.query(
                        "INSERT INTO auth.users (email, encrypted_password, raw_user_meta_data) VALUES ($1, $2, $3::jsonb) ON CONFLICT (email) DO NOTHING RETURNING id::text",
                        [email, hash, metadata]
                    ).scalar
                }
                guard let id else { throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered") }
                userID = id
            }
            kind = .confirmation
            sentColumn = "confirmation_sent_at"
        case "invite":
            userID = try await invitedUser(email: email, metadataJSON: metadata)
            kind = .confirmation
            sentColumn = "invited_at"
        case "magiclink", "recovery":
            guard let existing else { throw AuthFailure(status: 404, code: "user_not_found", message: "User with this email not found") }
            userID = existing.id
            kind = .recovery
            sentColumn = "recovery_sent_at"
        case "email_change_current", "email_change_new":
            guard let existing else { throw AuthFailure(status: 404, code: "user_not_found", message: "User with this email not found") }
            let newEmail = try Self.mailAddress(body, key: "new_email")
            guard newEmail != email else { throw AuthFailure(status: 422, code: "same_email", message: "The new email is the current email") }
            if try await userByEmail(newEmail) != nil {
                throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered")
            }
            _ = try await pool.run { connection in
                try await connection.query("UPDATE auth.users SET email_change = $2, updated_at = now() WHERE id = $1::uuid", [existing.id, newEmail])
            }
            userID = existing.id
            if type == "email_change_new" {
                kind = .emailChangeNew
                address = newEmail
            } else {
                kind = .emailChangeCurrent
            }
            linkType = "email_change"
            sentColumn = "email_change_sent_at"
        default:
            throw AuthFailure(
                status: 400, code: "validation_failed",
                message: "type must be one of signup, invite, magiclink, recovery, email_change_current, email_change_new")
        }
        let token = try await newToken(userID: userID, kind: kind, address: address, sentColumn: sentColumn)
        try? await host.audit(action: "auth.link_generated", target: "user:\(userID)", details: ["type": .string(type)], portal: portal)
        var answer = try await userJSON(userID)
        answer["action_link"] = actionLink(hash: token.hash, type: linkType, redirectTo: redirect)
        answer["email_otp"] = token.code
        answer["hashed_token"] = token.hash
        answer["redirect_to"] = redirect
        answer["verification_type"] = type
        return .json(answer)
    }

    /// `POST /token?grant_type=pkce {auth_code, code_verifier}`: the session of a PKCE flow
    /// whose link was followed (supabase clients' `exchange_code_for_session`).
    func pkceGrant(_ body: [String: Any]) async throws -> PluginResponse {
        guard let authCode = try Self.text(body, "auth_code", limit: 128), !authCode.isEmpty,
            let verifier = try Self.text(body, "code_verifier", limit: 128), !verifier.isEmpty
        else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "invalid request: both auth code and code verifier should be non-empty")
        }
        let flow = try await FlowStates.exchange(authCode: authCode, verifier: verifier, pool: pool)
        return .json(try await issueSession(userID: flow.userID, aal: "aal1", amr: [["method": flow.method == "recovery" ? "recovery" : "otp"]]))
    }

    /// `GET /verify?token=&type=&redirect_to=` (a link in a mail): 303 to `redirect_to` with
    /// the session in the fragment, or the error there. `POST /verify {type, email, token}`
    /// or `{type, token_hash}`: the session as JSON.
    func verifyLink(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        if request.method == "GET" {
            let query = request.queryItems
            let redirect = settings.redirect(query["redirect_to"])
            let type = query["type"] ?? ""
            let token = query["token"] ?? ""
            // Where an error goes; whether the token belongs to a PKCE flow is the server's
            // record (the stored hash carries the prefix), never the URL's say.
            var parameters: [(String, String)]
            var inQuery = token.hasPrefix(FlowStates.linkPrefix)
            do {
                guard !token.isEmpty else { throw AuthFailure(status: 400, code: "validation_failed", message: "Verify requires a token") }
                let redeemed = try await redeemToken(type: type, tokenHash: token, email: nil, code: nil, address: request.remoteAddress)
                let userID = redeemed.userID
                inQuery = redeemed.isPKCE
                if redeemed.isPKCE {
                    // The code goes to the page that holds the verifier; no tokens travel in the URL.
                    guard let code = try await FlowStates.issue(userID: userID, method: type, pool: pool) else {
                        throw AuthFailure(status: 404, code: "flow_state_not_found", message: "invalid flow state, no valid flow state found")
                    }
                    parameters = [("code", code)]
                } else {
                    let session = try await issueSession(userID: userID, aal: "aal1", amr: [["method": "otp"]])
                    parameters = [
                        ("access_token", session["access_token"] as? String ?? ""), ("expires_at", String(session["expires_at"] as? Int ?? 0)),
                        ("expires_in", String(session["expires_in"] as? Int ?? 0)), ("refresh_token", session["refresh_token"] as? String ?? ""),
                        ("token_type", "bearer"), ("type", type),
                    ]
                }
            } catch let failure as AuthFailure where failure.status < 500 {
                parameters = [
                    ("error", failure.status == 429 ? "too_many_requests" : "access_denied"), ("error_code", failure.code), ("error_description", failure.message),
                ]
            }
            let encoded = parameters.map { "\($0.0)=\(AuthEncoding.queryValue($0.1))" }.joined(separator: "&")
            let base = redirect.split(separator: "#", maxSplits: 1).first.map(String.init) ?? redirect
            let location = inQuery ? base + (base.contains("?") ? "&" : "?") + encoded : base + "#" + encoded
            return PluginResponse(status: 303, headers: [("location", location), ("cache-control", "no-store")])
        }
        guard let type = try Self.text(body, "type", limit: 32) else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "Verify requires a verification type")
        }
        let tokenHash = try Self.text(body, "token_hash", limit: 128).flatMap { $0.isEmpty ? nil : $0 }
        let code = try Self.text(body, "token", limit: 64).flatMap { $0.isEmpty ? nil : $0 }
        if tokenHash == nil && code == nil {
            throw AuthFailure(status: 400, code: "validation_failed", message: "Verify requires either a token or a token hash")
        }
        let email = tokenHash == nil ? try Self.mailAddress(body) : nil
        if tokenHash == nil, body["phone"] != nil, !(body["phone"] is NSNull) {
            throw AuthFailure(status: 400, code: "validation_failed", message: "Phone verification is not supported")
        }
        return .json(try await redeem(type: type, tokenHash: tokenHash, email: email, code: code, address: request.remoteAddress))
    }

    /// ``redeemToken(type:tokenHash:email:code:address:)`` and a session.
    private func redeem(type: String, tokenHash: String?, email: String?, code: String?, address: String) async throws -> [String: Any] {
        let userID = try await redeemToken(type: type, tokenHash: tokenHash, email: email, code: code, address: address).userID
        return try await issueSession(userID: userID, aal: "aal1", amr: [["method": "otp"]])
    }

    /// Redeems a token (by hash, or by address and code) of a kind `type` accepts and applies
    /// what it confirms; returns the user and whether the token belongs to a PKCE flow. Wrong
    /// codes count against ``AttemptThrottle/otp``. A token hash must match as stored (a PKCE
    /// token's with its prefix); a code matches either form, as GoTrue's.
    private func redeemToken(type: String, tokenHash: String?, email: String?, code: String?, address: String) async throws -> (userID: String, isPKCE: Bool) {
        guard let kinds = Self.verificationKinds[type] else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "type must be one of signup, invite, magiclink, recovery, email_change, email")
        }
        let hashes: [String]
        let account: String
        if let email, let code {
            let hash = OneTimeTokens.hash(email: email, code: code.trimmingCharacters(in: .whitespaces))
            hashes = [hash, FlowStates.linkPrefix + hash]
            account = email
        } else if let tokenHash, tokenHash.utf8.count <= 128, !tokenHash.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value > 0x7E }) {
            hashes = [tokenHash.lowercased()]
            account = "token-hash:\(address)"
        } else {
            throw AuthFailure(status: 403, code: "otp_expired", message: "Token has expired or is invalid")
        }
        try await AttemptThrottle.otp.begin(account: account, address: address, pool: pool)
        enum Outcome {
            case invalid
            case banned
            case emailTaken
            case redeemed(String, isPKCE: Bool)
        }
        let expiry = settings.otpExpirySeconds
        let outcome: Outcome = try await pool.run { connection in
            try await connection.transaction { connection in
                guard let token = try await OneTimeTokens.redeem(hashes: hashes, kinds: kinds, expirySeconds: expiry, on: connection) else {
                    return (.invalid, true)
                }
                guard
                    let user = try await connection.query(
                        """
                        SELECT coalesce(email, ''), coalesce(email_change, ''), (banned_until IS NOT NULL AND banned_until > now())::text
                        FROM auth.users WHERE id = $1::uuid AND deleted_at IS NULL FOR UPDATE
                        """, [token.userID]
                    ).rows.first
                else { return (.invalid, true) }
                let current = user[0] ?? "", pending = user[1] ?? ""
                if user[2] == "true" { return (.banned, true) }
                switch token.kind {
                case .confirmation, .recovery:
                    guard token.relatesTo == current else { return (.invalid, true) }
                    try await connection.query(
                        "UPDATE auth.users SET email_confirmed_at = coalesce(email_confirmed_at, now()), last_sign_in_at = now(), updated_at = now() WHERE id = $1::uuid",
                        [token.userID])
                case .emailChangeNew, .emailChangeCurrent:
                    let expected = token.kind == .emailChangeNew ? pending : current
                    guard !pending.isEmpty, token.relatesTo == expected else { return (.invalid, true) }
                    if try await connection.query("SELECT 1 FROM auth.users WHERE email = $1 AND id <> $2::uuid", [pending, token.userID]).scalar != nil {
                        return (.emailTaken, true)
                    }
                    try await connection.query(
                        """
                        UPDATE auth.users SET email = email_change, email_change = NULL, email_change_sent_at = NULL, is_anonymous = false,
                          email_confirmed_at = coalesce(email_confirmed_at, now()), last_sign_in_at = now(), updated_at = now()
                        WHERE id = $1::uuid
                        """, [token.userID])
                    try await connection.query(
                        "DELETE FROM auth.one_time_tokens WHERE user_id = $1::uuid AND token_type IN ('email_change_token_new', 'email_change_token_current')",
                        [token.userID])
                }
                return (.redeemed(token.userID, isPKCE: token.isPKCE), true)
            }
        }
        switch outcome {
        case .invalid:
            throw AuthFailure(status: 403, code: "otp_expired", message: "Token has expired or is invalid")
        case .banned:
            throw AuthFailure(status: 403, code: "user_banned", message: "User is banned")
        case .emailTaken:
            throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered")
        case .redeemed(let userID, let isPKCE):
            await AttemptThrottle.otp.succeeded(account: account, address: address, pool: pool)
            return (userID, isPKCE)
        }
    }
}
