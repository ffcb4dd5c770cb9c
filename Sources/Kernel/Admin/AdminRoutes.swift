import Foundation
import Hummingbird

/// `/v1/admin/*`: sign-in, token refresh, sign-out, TOTP and admin accounts.
struct AdminRoutes: Sendable {
    let identity: AdminIdentity

    func register(on router: some RouterMethods<KernelRequestContext>) {
        let identity = identity
        router.post("/v1/admin/login") { request, context in
            try await AdminHTTP.run {
                let body = try await AdminHTTP.decode(Credentials.self, from: request, expected: "{\"email\": \"...\", \"password\": \"...\"}")
                let pair = try await identity.login(email: body.email, password: body.password, address: context.clientAddress)
                return AdminHTTP.json(pair)
            }
        }
        router.post("/v1/admin/token") { request, context in
            try await AdminHTTP.run {
                let body = try await AdminHTTP.decode(RefreshBody.self, from: request, expected: "{\"refresh_token\": \"...\"}")
                let pair = try await identity.refresh(body.refreshToken, address: context.clientAddress)
                return AdminHTTP.json(pair)
            }
        }
        router.post("/v1/admin/logout") { request, _ in
            try await AdminHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1, allowMFAPending: true)
                try await identity.logout(principal)
                return AdminHTTP.json(SignedOut(signedOut: true, sessionID: principal.sessionID))
            }
        }
        router.post("/v1/admin/mfa/totp/enroll") { request, _ in
            try await AdminHTTP.run {
                // An admin who already has TOTP passes the pending check only at aal2; the
                // domain then allows replacing the secret.
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1, allowMFAPending: true)
                return AdminHTTP.json(try await identity.enrollTOTP(principal))
            }
        }
        router.post("/v1/admin/mfa/totp/verify") { request, context in
            try await AdminHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1, allowMFAPending: true)
                let body = try await AdminHTTP.decode(CodeBody.self, from: request, expected: "{\"code\": \"123456\"}")
                let pair = try await identity.verifyTOTPEnrolment(principal, code: body.code, address: context.clientAddress)
                return AdminHTTP.json(pair)
            }
        }
        router.post("/v1/admin/mfa/challenge") { request, context in
            try await AdminHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1, allowMFAPending: true)
                let body = try await AdminHTTP.decode(CodeBody.self, from: request, expected: "{\"code\": \"123456\"} or {\"code\": \"<recovery code>\"}")
                let pair = try await identity.challenge(principal, code: body.code, address: context.clientAddress)
                return AdminHTTP.json(pair)
            }
        }
        router.get("/v1/admin/users") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                let admins = try await identity.listAdmins()
                return AdminHTTP.json(["users": admins])
            }
        }
        router.post("/v1/admin/users") { request, _ in
            try await AdminHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                let body = try await AdminHTTP.decode(Credentials.self, from: request, expected: "{\"email\": \"...\", \"password\": \"...\"}")
                let created = try await identity.createAdmin(by: principal, email: body.email, password: body.password)
                return AdminHTTP.json(created, status: .created)
            }
        }
    }
}

extension AdminRoutes {
    /// `{email, password}` (sign-in, a new admin).
    struct Credentials: Decodable {
        var email: String
        var password: String
    }

    /// `{refresh_token}`.
    struct RefreshBody: Decodable {
        var refreshToken: String

        enum CodingKeys: String, CodingKey {
            case refreshToken = "refresh_token"
        }
    }

    /// `{code}`: a TOTP or recovery code.
    struct CodeBody: Decodable {
        var code: String
    }

    /// `{signed_out, session_id}`.
    struct SignedOut: Encodable {
        var signedOut: Bool
        var sessionID: String

        enum CodingKeys: String, CodingKey {
            case signedOut = "signed_out"
            case sessionID = "session_id"
        }
    }
}
