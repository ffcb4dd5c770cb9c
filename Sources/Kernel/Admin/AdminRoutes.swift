import Foundation
import Hummingbird

/// `/v1/admin/*`: sign-in, token refresh, sign-out, TOTP and admin accounts.
struct AdminRoutes: Sendable {
    let identity: AdminIdentity

    func register(on router: some RouterMethods<KernelRequestContext>) {
        let identity = identity
        router.post("/v1/admin/login") { request, context in
            try await HubHTTP.run {
                let body = try await HubHTTP.object(request, expected: "{\"email\": \"...\", \"password\": \"...\"}")
                let pair = try await identity.login(
                    email: try HubHTTP.string(body, "email"), password: try HubHTTP.string(body, "password"), address: context.clientAddress)
                return HubHTTP.json(pair.json)
            }
        }
        router.post("/v1/admin/token") { request, context in
            try await HubHTTP.run {
                let body = try await HubHTTP.object(request, expected: "{\"refresh_token\": \"...\"}")
                let pair = try await identity.refresh(try HubHTTP.string(body, "refresh_token"), address: context.clientAddress)
                return HubHTTP.json(pair.json)
            }
        }
        router.post("/v1/admin/logout") { request, _ in
            try await HubHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1, allowMFAPending: true)
                try await identity.logout(principal)
                return HubHTTP.json(["signed_out": true, "session_id": principal.sessionID])
            }
        }
        router.post("/v1/admin/mfa/totp/enroll") { request, _ in
            try await HubHTTP.run {
                // An admin who already has TOTP passes the pending check only at aal2; the
                // domain then allows replacing the secret.
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1, allowMFAPending: true)
                return HubHTTP.json(try await identity.enrollTOTP(principal).json)
            }
        }
        router.post("/v1/admin/mfa/totp/verify") { request, context in
            try await HubHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1, allowMFAPending: true)
                let body = try await HubHTTP.object(request, expected: "{\"code\": \"123456\"}")
                let pair = try await identity.verifyTOTPEnrolment(principal, code: try HubHTTP.string(body, "code"), address: context.clientAddress)
                return HubHTTP.json(pair.json)
            }
        }
        router.post("/v1/admin/mfa/challenge") { request, context in
            try await HubHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1, allowMFAPending: true)
                let body = try await HubHTTP.object(request, expected: "{\"code\": \"123456\"} or {\"code\": \"<recovery code>\"}")
                let pair = try await identity.challenge(principal, code: try HubHTTP.string(body, "code"), address: context.clientAddress)
                return HubHTTP.json(pair.json)
            }
        }
        router.get("/v1/admin/users") { request, _ in
            try await HubHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                let admins = try await identity.listAdmins()
                return HubHTTP.json(["users": admins.map(\.json)])
            }
        }
        router.post("/v1/admin/users") { request, _ in
            try await HubHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                let body = try await HubHTTP.object(request, expected: "{\"email\": \"...\", \"password\": \"...\"}")
                let created = try await identity.createAdmin(
                    by: principal, email: try HubHTTP.string(body, "email"), password: try HubHTTP.string(body, "password"))
                return HubHTTP.json(created.json, status: .created)
            }
        }
    }
}
