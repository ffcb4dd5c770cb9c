import AsyncHTTPClient
import Crypto
import Foundation
import MeltyEd25519
import MeltyLicense
import MeltyRedis
import MeltyTOTP
import MeltyTestServices
import NIOCore
import NIOHTTP1
import Testing

@testable import Kernel

/// Admin identity over HTTP against a real Postgres and Redis: sign-in, throttling,
/// tokens, TOTP, the AAL2 gate, admin seats and the audit routes.
@Suite("AdminIdentity: login, throttling, JWT, TOTP, AAL2, seats, audit routes", .serialized, .timeLimit(.minutes(3)))
struct AdminIdentityTests {
    static let password = "Orbital-Quartz-Lantern-77"

    // MARK: Fixtures

    /// A kernel after setup, with its root admin.
    struct Instance {
        let kernel: TestKernel
        let email: String
        let conninfo: String
        let vendor: Ed25519.KeyPair

        func request(
            _ path: String, method: HTTPMethod = .GET, json: [String: Any]? = nil, token: String? = nil
        ) async throws -> (status: Int, headers: HTTPHeaders, body: String, json: [String: Any]) {
            var headers: [(String, String)] = [("content-type", "application/json")]
            if let token { headers.append(("authorization", "Bearer \(token)")) }
            let body = try json.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
            let response = try await kernel.request(path, method: method, body: body, headers: headers)
            return (response.status, response.headers, response.body, HTTP.json(response.body))
        }

        func login(_ email: String? = nil, password: String = AdminIdentityTests.password) async throws -> (status: Int, headers: HTTPHeaders, body: String, json: [String: Any]) {
            try await request("/v1/admin/login", method: .POST, json: ["email": email ?? self.email, "password": password])
        }

        /// The access token of a successful login.
        func accessToken(_ email: String? = nil) async throws -> String {
            let response = try await login(email)
            #expect(response.status == 200, "\(response.body)")
            return try #require(response.json["access_token"] as? String)
        }

        func database() async throws -> PostgresConnection { try await TestServices.connect(conninfo) }
    }

    static let toml = """
        [plugins.echo-swift]
        path = "{ECHO_SWIFT}"
        """

    /// Starts a kernel, runs setup with a license of `seats`, clears the address counters
    /// of earlier runs (the per-address limit spans every account on 127.0.0.1).
    static func instance(seats: Int = 20, redisURL: String? = nil, toml: String = AdminIdentityTests.toml) async throws -> Instance {
        try await clearAddressThrottle()
        let vendor = Ed25519.generate()
        let kernel = try await TestKernel.start("[license]\npublic_key = \"\(ByteEncoding.hex(vendor.publicKey))\"\n" + toml, redisURL: redisURL)
        let license = try LicenseIssuer.sign(
            License(ownerName: "Ada Admin", ownerEmail: "owner@example.com", tier: .commercial, seats: seats, issuedAt: Date(), expiresAt: nil),
            secretKey: vendor.secretKey)
        let email = "root-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let body: [String: Any] = ["license_key": license, "admin": ["email": email, "password": password]]
        let setup = try await kernel.request(
            "/v1/system/setup", method: .POST, body: String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self))
        #expect(setup.status == 201, "\(setup.body)")
        return Instance(kernel: kernel, email: email, conninfo: kernel.conninfo, vendor: vendor)
    }

    static func clearAddressThrottle() async throws {
        let redis = try RedisClient(url: try TestServices.redisURL())
        for scope in ["login", "mfa"] {
            _ = try await redis.command(["DEL", "meltybase:throttle:\(scope):address:127.0.0.1", "meltybase:throttle:\(scope):address-lock:127.0.0.1"])
        }
    }

    /// The JSON payload of a JWT, decoded without checking it.
    static func claims(_ token: String) -> [String: Any] {
        let parts = token.split(separator: ".")
        guard parts.count >= 2, let bytes = ByteEncoding.fromBase64URL(String(parts[1])) else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }

    /// Enrols TOTP for the holder of `token` and confirms it; returns the secret (base32),
    /// the recovery codes and the aal2 response.
    static func enrol(_ instance: Instance, token: String) async throws -> (secret: String, recoveryCodes: [String], aal2: [String: Any]) {
        let enrolment = try await instance.request("/v1/admin/mfa/totp/enroll", method: .POST, token: token)
        #expect(enrolment.status == 200, "\(enrolment.body)")
        let secret = try #require(enrolment.json["secret"] as? String)
        let codes = try #require(enrolment.json["recovery_codes"] as? [String])
        let verified = try await instance.request(
            "/v1/admin/mfa/totp/verify", method: .POST, json: ["code": IndependentTOTP.code(base32Secret: secret, at: Date())], token: token)
        #expect(verified.status == 200, "\(verified.body)")
        return (secret, codes, verified.json)
    }

    // MARK: Sign-in

    @Test("login: 409 before setup; ok at aal1; wrong password and unknown email give the same 401; all audited, no password kept")
    func login() async throws {
        try await Self.clearAddressThrottle()
        let fresh = try await TestKernel.start(Self.toml)
        let early = try await fresh.request("/v1/admin/login", method: .POST, body: #"{"email":"a@example.com","password":"Orbital-Quartz-Lantern-77"}"#)
        #expect(early.status == 409 && HTTP.json(early.body)["code"] as? String == "not_initialized", "\(early.body)")
        await fresh.stop()

        let instance = try await Self.instance()
        let ok = try await instance.login()
        #expect(ok.status == 200, "\(ok.body)")
        #expect(ok.json["token_type"] as? String == "bearer")
        #expect(ok.json["aal"] as? String == "aal1")
        #expect(ok.json["mfa_required"] as? Bool == false)
        #expect(ok.json["expires_in"] as? Int == 900)
        #expect((ok.json["refresh_token"] as? String)?.count == 43)
        let claims = Self.claims(try #require(ok.json["access_token"] as? String))
        #expect(claims["email"] as? String == instance.email)
        #expect(claims["role"] as? String == "root")
        #expect(claims["aal"] as? String == "aal1")
        #expect(claims["amr"] as? [String] == ["pwd"])
        #expect(UUID(uuidString: claims["sub"] as? String ?? "") != nil)
        #expect(UUID(uuidString: claims["session_id"] as? String ?? "") != nil)
        let issued = try #require((claims["iat"] as? NSNumber)?.doubleValue)
        let expires = try #require((claims["exp"] as? NSNumber)?.doubleValue)
        #expect(abs(expires - issued - 900) < 1)

        let wrong = try await instance.login(password: "Wrong-Password-123456")
        let unknown = try await instance.login("nobody-\(UUID().uuidString.prefix(6))@example.com")
        #expect(wrong.status == 401 && unknown.status == 401)
        #expect(wrong.json["code"] as? String == "invalid_credentials")
        #expect(wrong.json["code"] as? String == unknown.json["code"] as? String)
        #expect(wrong.json["message"] as? String == unknown.json["message"] as? String)
        #expect(wrong.json["hint"] as? String == unknown.json["hint"] as? String)
        #expect(wrong.headers.first(name: "www-authenticate") != nil)

        let database = try await instance.database()
        let audit = try await database.query("SELECT action, target, details::text FROM meltybase.audit_log ORDER BY seq")
        let actions = audit.rows.map { $0[0] ?? "" }
        #expect(actions.contains("admin.login"))
        #expect(actions.filter { $0 == "admin.login_failed" }.count == 2)
        #expect(audit.rows.contains { $0[0] == "admin.login_failed" && $0[1] == instance.email && ($0[2] ?? "").contains("invalid_credentials") })
        let everything: String =
            try await database.query(
                """
                SELECT string_agg(t, ' ') FROM (
                    SELECT row_to_json(a)::text AS t FROM meltybase.audit_log a
                    UNION ALL SELECT row_to_json(s)::text FROM public.secrets s
                    UNION ALL SELECT row_to_json(k)::text FROM meltybase.admin_sessions k
                    UNION ALL SELECT row_to_json(r)::text FROM meltybase.admin_refresh_tokens r) x
                """
            ).rows.first?[0] ?? ""
        #expect(!everything.isEmpty && !everything.contains(Self.password))
        #expect(!everything.contains("Wrong-Password-123456"))
        #expect(!everything.contains(ok.json["refresh_token"] as? String ?? "-"), "refresh tokens are stored hashed")
        let signingKey: String? = try await database.query("SELECT value FROM meltybase.kernel_secrets WHERE name = 'admin_jwt_hs256'").rows.first?[0] ?? nil
        #expect(signingKey?.count == 64)
        #expect(!instance.kernel.log.text.contains(Self.password) && !instance.kernel.log.text.contains(signingKey ?? "-"))
        await instance.kernel.stop()
    }

    @Test("5 failures lock the account for 15 minutes: 429 login_locked with Retry-After, even with the right password")
    func lockout() async throws {
        let instance = try await Self.instance()
        for attempt in 1...5 {
            let response = try await instance.login(password: "Wrong-Password-\(attempt)-abcdef")
            #expect(response.status == 401, "attempt \(attempt): \(response.body)")
        }
        let locked = try await instance.login()
        #expect(locked.status == 429, "\(locked.body)")
        #expect(locked.json["code"] as? String == "login_locked")
        let retryAfter = try #require(locked.headers.first(name: "retry-after").flatMap { Int($0) })
        #expect((800...900).contains(retryAfter))
        let audit = try await instance.database().query("SELECT count(*) FROM meltybase.audit_log WHERE action = 'admin.login_failed' AND details->>'reason' = 'account_locked'")
        #expect(audit.rows.first?[0] == "1")
        // Other accounts are not locked by it.
        let other = try await instance.login("someone-\(UUID().uuidString.prefix(8))@example.com", password: "Wrong-Password-xyz-123")
        #expect(other.status == 401)
        await instance.kernel.stop()
    }

    @Test("a burst of concurrent wrong passwords gets at most 5 password checks before the lock")
    func concurrentLockout() async throws {
        let instance = try await Self.instance()
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for attempt in 0..<12 {
                group.addTask { try await instance.login(password: "Wrong-Password-burst-\(attempt)").status }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 401 }.count <= 5, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count >= 7, "\(statuses)")
        #expect(try await instance.login().status == 429)
        await instance.kernel.stop()
    }

    @Test("without Redis, login fails closed: 503 throttle_unavailable, audited")
    func throttleFailsClosed() async throws {
        let instance = try await Self.instance(redisURL: "redis://127.0.0.1:1")
        let response = try await instance.login()
        #expect(response.status == 503, "\(response.body)")
        #expect(response.json["code"] as? String == "throttle_unavailable")
        #expect(response.headers.first(name: "retry-after") != nil)
        #expect(response.json["access_token"] == nil)
        let audit = try await instance.database().query(
            "SELECT count(*) FROM meltybase.audit_log WHERE action = 'admin.login_failed' AND details->>'reason' = 'throttle_unavailable'")
        #expect(audit.rows.first?[0] == "1")
        await instance.kernel.stop()
    }

    // MARK: Tokens

    @Test("JWT: alg none, a wrong secret, an expired token, a tampered payload and a revoked session are refused with 401")
    func jwtAttacks() async throws {
        let instance = try await Self.instance()
        let token = try await instance.accessToken()
        #expect(try await instance.request("/v1/hub/portals", token: token).status == 200)
        #expect(try await instance.request("/v1/hub/portals").status == 401)
        #expect(try await instance.request("/v1/hub/portals", token: "not-a-jwt").status == 401)

        let parts = token.split(separator: ".").map(String.init)
        let none = ByteEncoding.base64URL(Array(#"{"alg":"none","typ":"JWT"}"#.utf8)) + "." + parts[1] + "."
        let noneResponse = try await instance.request("/v1/hub/portals", token: none)
        #expect(noneResponse.status == 401 && noneResponse.json["code"] as? String == "unauthenticated", "\(noneResponse.body)")

        var payload = Self.claims(token)
        payload["aal"] = "aal2"
        let tampered = parts[0] + "." + ByteEncoding.base64URL(Array(try JSONSerialization.data(withJSONObject: payload))) + "." + parts[2]
        #expect(try await instance.request("/v1/hub/portals", token: tampered).status == 401)

        let database = SystemDatabase(conninfo: instance.conninfo)
        let claims = try await AdminTokens(database: database).verify(token)
        let forged = try await AdminTokens(database: database, key: Array(repeating: 7, count: 32)).sign(claims)
        let forgedResponse = try await instance.request("/v1/hub/portals", token: forged)
        #expect(forgedResponse.status == 401)
        #expect((forgedResponse.json["message"] as? String)?.contains("signature") == true, "\(forgedResponse.body)")

        var old = claims
        old.iat = .init(value: Date().addingTimeInterval(-3600))
        old.exp = .init(value: Date().addingTimeInterval(-60))
        let expired = try await AdminTokens(database: database).sign(old)
        let expiredResponse = try await instance.request("/v1/hub/portals", token: expired)
        #expect(expiredResponse.status == 401)
        #expect((expiredResponse.json["message"] as? String)?.contains("expired") == true, "\(expiredResponse.body)")

        // Sign-out revokes the session: its still-unexpired token stops working at once.
        #expect(try await instance.request("/v1/admin/logout", method: .POST, token: token).status == 200)
        #expect(try await instance.request("/v1/hub/portals", token: token).status == 401)
        await instance.kernel.stop()
    }

    @Test("refresh tokens rotate on use; reusing a rotated one revokes the whole session")
    func refreshRotation() async throws {
        let instance = try await Self.instance()
        let login = try await instance.login()
        let first = try #require(login.json["refresh_token"] as? String)
        let rotated = try await instance.request("/v1/admin/token", method: .POST, json: ["refresh_token": first])
        #expect(rotated.status == 200, "\(rotated.body)")
        let second = try #require(rotated.json["refresh_token"] as? String)
        #expect(second != first)
        #expect(rotated.json["aal"] as? String == "aal1")
        #expect(rotated.json["session_id"] as? String == login.json["session_id"] as? String)
        let access = try #require(rotated.json["access_token"] as? String)
        #expect(try await instance.request("/v1/hub/portals", token: access).status == 200)

        let reused = try await instance.request("/v1/admin/token", method: .POST, json: ["refresh_token": first])
        #expect(reused.status == 401 && reused.json["code"] as? String == "refresh_token_reused", "\(reused.body)")
        let afterReuse = try await instance.request("/v1/admin/token", method: .POST, json: ["refresh_token": second])
        #expect(afterReuse.status == 401 && afterReuse.json["code"] as? String == "invalid_refresh_token", "\(afterReuse.body)")
        #expect(try await instance.request("/v1/hub/portals", token: access).status == 401, "the revoked session's access token is refused")
        #expect(try await instance.request("/v1/admin/token", method: .POST, json: ["refresh_token": "made-up"]).status == 401)
        let audit = try await instance.database().query("SELECT count(*) FROM meltybase.audit_log WHERE action = 'admin.session.reuse_detected'")
        #expect(audit.rows.first?[0] == "1")
        await instance.kernel.stop()
    }

    // MARK: TOTP and AAL2

    @Test("license replacement needs AAL2, verifies the new license, covers existing admins, and is audited")
    func licenseReplacement() async throws {
        let instance = try await Self.instance(seats: 20)
        func license(seats: Int, key: Ed25519.KeyPair) throws -> String {
            try LicenseIssuer.sign(
                License(ownerName: "Ada Admin", ownerEmail: "owner@example.com", tier: .indie, seats: seats, issuedAt: Date(), expiresAt: nil),
                secretKey: key.secretKey)
        }
        let aal1 = try await instance.accessToken()
        let refused = try await instance.request("/v1/system/license", method: .PUT, json: ["license_key": try license(seats: 30, key: instance.vendor)], token: aal1)
        #expect(refused.status == 403 && refused.json["code"] as? String == "aal2_required", "\(refused.body)")
        let aal2 = try #require(try await Self.enrol(instance, token: aal1).aal2["access_token"] as? String)
        let forged = try await instance.request("/v1/system/license", method: .PUT, json: ["license_key": try license(seats: 30, key: Ed25519.generate())], token: aal2)
        #expect(forged.status == 400 && forged.json["reason"] as? String == "bad_signature", "\(forged.body)")
        let replaced = try await instance.request("/v1/system/license", method: .PUT, json: ["license_key": try license(seats: 30, key: instance.vendor)], token: aal2)
        #expect(replaced.status == 200, "\(replaced.body)")
        let summary = try await instance.request("/v1/system/license", token: aal2)
        #expect(summary.body.contains("30") && summary.body.contains("indie"), "\(summary.body)")
        let created = try await instance.request("/v1/admin/users", method: .POST, json: ["email": "second@example.com", "password": Self.password], token: aal2)
        #expect(created.status == 201 || created.status == 200, "\(created.body)")
        let tooFew = try await instance.request("/v1/system/license", method: .PUT, json: ["license_key": try license(seats: 1, key: instance.vendor)], token: aal2)
        #expect(tooFew.status == 409 && tooFew.json["code"] as? String == "seats_below_admins", "\(tooFew.body)")
        let audit = try await instance.request("/v1/audit?action=license.replace", token: aal2)
        #expect((audit.json["entries"] as? [[String: Any]])?.count == 1, "\(audit.body)")
        await instance.kernel.stop()
    }

    @Test("TOTP: aal1 is refused on configuration naming AAL2; an independent code gives aal2; portal changes work and are audited; replay refused")
    func totpAndAAL2() async throws {
        let instance = try await Self.instance()
        let aal1 = try await instance.accessToken()
        let portal = "acme-\(UUID().uuidString.prefix(6).lowercased())"
        let refused = try await instance.request("/v1/hub/portals", method: .POST, json: ["name": portal, "plugins": []], token: aal1)
        #expect(refused.status == 403, "\(refused.body)")
        #expect(refused.json["code"] as? String == "aal2_required")
        #expect((refused.json["message"] as? String)?.contains("AAL2") == true)
        for (method, path) in [
            (HTTPMethod.DELETE, "/v1/hub/portals/\(portal)"), (.POST, "/v1/hub/portals/\(portal)/plugins/echo-swift"),
            (.DELETE, "/v1/hub/portals/\(portal)/plugins/echo-swift"),
        ] {
            let response = try await instance.request(path, method: method, token: aal1)
            #expect(response.status == 403 && response.json["code"] as? String == "aal2_required", "\(method) \(path): \(response.body)")
        }
        // aal1 may read.
        let license = try await instance.request("/v1/system/license", token: aal1)
        #expect(license.status == 200, "\(license.body)")
        #expect(license.json["tier"] as? String == "commercial" && license.json["seats"] as? Int == 20 && license.json["seats_used"] as? Int == 1)
        #expect(license.json["owner"] as? String == "owner@example.com")
        #expect(try await instance.request("/v1/system/license").status == 401)

        // Enrolment: the secret, the URI, ten recovery codes; nothing stored in clear.
        let enrolment = try await instance.request("/v1/admin/mfa/totp/enroll", method: .POST, token: aal1)
        #expect(enrolment.status == 200, "\(enrolment.body)")
        let secret = try #require(enrolment.json["secret"] as? String)
        #expect(Base32.decode(secret)?.count == 20)
        #expect(enrolment.json["otpauth_uri"] as? String == "otpauth://totp/MeltyBase:\(instance.email)?secret=\(secret)&issuer=MeltyBase")
        #expect((enrolment.json["qr_svg"] as? String)?.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\"") == true, "the kernel draws the QR code")
        let recoveryCodes = try #require(enrolment.json["recovery_codes"] as? [String])
        #expect(recoveryCodes.count == 10 && Set(recoveryCodes).count == 10)
        let database = try await instance.database()
        let stored = try await database.query("SELECT coalesce(totp_secret, '') || coalesce(totp_pending_secret, '') FROM public.secrets").rows.map { $0[0] ?? "" }.joined()
        #expect(!stored.contains(secret) && stored.contains("xc1:"))
        let codeRows: String = try await database.query("SELECT string_agg(code_hash, ' ') FROM meltybase.admin_recovery_codes").rows.first?[0] ?? ""
        #expect(codeRows.count > 600 && recoveryCodes.allSatisfy { !codeRows.contains($0) })

        // A wrong code is refused; the code from two independent implementations is accepted.
        let wrong = try await instance.request("/v1/admin/mfa/totp/verify", method: .POST, json: ["code": "000000"], token: aal1)
        #expect(wrong.status == 401 || IndependentTOTP.code(base32Secret: secret, at: Date()) == "000000")
        let now = Date()
        let code = IndependentTOTP.code(base32Secret: secret, at: now)
        #expect(try Self.oathtool(secret: secret, at: now) == code)
        let verified = try await instance.request("/v1/admin/mfa/totp/verify", method: .POST, json: ["code": code], token: aal1)
        #expect(verified.status == 200, "\(verified.body)")
        #expect(verified.json["aal"] as? String == "aal2" && verified.json["mfa_required"] as? Bool == false)
        let aal2 = try #require(verified.json["access_token"] as? String)
        #expect(Self.claims(aal2)["aal"] as? String == "aal2")
        #expect(Self.claims(aal2)["amr"] as? [String] == ["pwd", "otp"])
        #expect(try await instance.request("/v1/hub/portals", token: aal1).status == 401, "the aal1 session was replaced")

        // aal2: create, enable, disable, list, delete; each change audited.
        let created = try await instance.request("/v1/hub/portals", method: .POST, json: ["name": portal, "plugins": []], token: aal2)
        #expect(created.status == 201, "\(created.body)")
        #expect(try await instance.request("/v1/hub/portals", method: .POST, json: ["name": portal, "plugins": []], token: aal2).status == 409)
        #expect(try await instance.request("/v1/hub/portals", method: .POST, json: ["name": "Bad Name"], token: aal2).status == 400)
        #expect(try await instance.request("/v1/hub/portals/\(portal)/plugins/echo-swift", method: .POST, token: aal2).status == 200)
        var listed = try await instance.request("/v1/hub/portals", token: aal2)
        var entry = (listed.json["portals"] as? [[String: Any]])?.first { $0["name"] as? String == portal }
        #expect(entry?["plugins"] as? [String] == ["echo-swift"], "\(listed.body)")
        #expect(try await instance.request("/v1/hub/portals/\(portal)/plugins/echo-swift", method: .DELETE, token: aal2).status == 200)
        #expect(try await instance.request("/v1/hub/portals/\(portal)/plugins/echo-swift", method: .DELETE, token: aal2).status == 404)
        #expect(try await instance.request("/v1/hub/portals/\(portal)/plugins/nope", method: .POST, token: aal2).status == 400)
        listed = try await instance.request("/v1/hub/portals", token: aal2)
        entry = (listed.json["portals"] as? [[String: Any]])?.first { $0["name"] as? String == portal }
        #expect(entry?["plugins"] as? [String] == [])
        let audit = try await instance.request("/v1/audit?action=hub.portal.create", token: aal2)
        let entries = try #require(audit.json["entries"] as? [[String: Any]])
        #expect(entries.count == 1 && entries.first?["target"] as? String == portal && entries.first?["actor"] as? String == "admin:\(instance.email)")
        #expect(entries.first?["portal"] as? String == portal)
        #expect(try await instance.request("/v1/hub/portals/\(portal)", method: .DELETE, token: aal2).status == 200)
        #expect(try await instance.request("/v1/hub/portals/\(portal)", method: .DELETE, token: aal2).status == 404)
        let actions = try await database.query("SELECT action FROM meltybase.audit_log WHERE portal = $1 ORDER BY seq", [portal]).rows.map { $0[0] ?? "" }
        #expect(actions == ["hub.portal.create", "hub.portal.plugin_enable", "hub.portal.plugin_disable", "hub.portal.delete"])

        // Enrolled now: a login is aal1 with mfa_required, and only the challenge accepts it.
        let second = try await instance.login()
        #expect(second.json["aal"] as? String == "aal1" && second.json["mfa_required"] as? Bool == true)
        let pending = try #require(second.json["access_token"] as? String)
        let readRefused = try await instance.request("/v1/hub/portals", token: pending)
        #expect(readRefused.status == 403 && readRefused.json["code"] as? String == "mfa_required", "\(readRefused.body)")
        let writeRefused = try await instance.request("/v1/hub/portals", method: .POST, json: ["name": "x1"], token: pending)
        #expect(writeRefused.status == 403 && (writeRefused.json["message"] as? String)?.contains("AAL2") == true)
        // The code already used for enrolment is a replay.
        let replay = try await instance.request("/v1/admin/mfa/challenge", method: .POST, json: ["code": code], token: pending)
        #expect(replay.status == 401 && replay.json["code"] as? String == "totp_code_reused", "\(replay.body)")
        // The next step's code (within the ±1 window) works once.
        let next = IndependentTOTP.code(base32Secret: secret, at: now.addingTimeInterval(30))
        let challenged = try await instance.request("/v1/admin/mfa/challenge", method: .POST, json: ["code": next], token: pending)
        #expect(challenged.status == 200 && challenged.json["aal"] as? String == "aal2", "\(challenged.body)")
        let third = try await instance.accessToken()
        let again = try await instance.request("/v1/admin/mfa/challenge", method: .POST, json: ["code": next], token: third)
        #expect(again.status == 401 && again.json["code"] as? String == "totp_code_reused", "\(again.body)")
        // Re-enrolment needs aal2.
        let reenrol = try await instance.request("/v1/admin/mfa/totp/enroll", method: .POST, token: third)
        #expect(reenrol.status == 403 && reenrol.json["code"] as? String == "aal2_required")
        await instance.kernel.stop()
    }

    @Test("recovery codes: each works once, case and dashes ignored")
    func recoveryCodes() async throws {
        let instance = try await Self.instance()
        let enrolled = try await Self.enrol(instance, token: try await instance.accessToken())
        let pending = try await instance.accessToken()
        let code = enrolled.recoveryCodes[3]
        let used = try await instance.request("/v1/admin/mfa/challenge", method: .POST, json: ["code": code.uppercased()], token: pending)
        #expect(used.status == 200 && used.json["aal"] as? String == "aal2", "\(used.body)")
        let aal2 = try #require(used.json["access_token"] as? String)
        #expect(Self.claims(aal2)["amr"] as? [String] == ["pwd", "recovery_code"])
        #expect(try await instance.request("/v1/hub/portals", method: .POST, json: ["name": "rc-portal", "plugins": []], token: aal2).status == 201)
        let pendingAgain = try await instance.accessToken()
        let reused = try await instance.request("/v1/admin/mfa/challenge", method: .POST, json: ["code": code], token: pendingAgain)
        #expect(reused.status == 401 && reused.json["code"] as? String == "invalid_mfa_code", "\(reused.body)")
        let other = try await instance.request(
            "/v1/admin/mfa/challenge", method: .POST, json: ["code": enrolled.recoveryCodes[4].replacingOccurrences(of: "-", with: "")], token: pendingAgain)
        #expect(other.status == 200, "\(other.body)")
        let audit = try await instance.database().query("SELECT details->>'recovery_codes_left' FROM meltybase.audit_log WHERE action = 'admin.mfa.challenge' ORDER BY seq")
        #expect(audit.rows.map { $0[0] } == ["9", "8"])
        await instance.kernel.stop()
    }

    @Test("kernels on one database share the token key; TOTP works on a kernel given the cluster's key set; one with its own keys refuses to start")
    func sharedAcrossKernels() async throws {
        let first = try await Self.instance()
        let token = try await first.accessToken()
        let enrolled = try await Self.enrol(first, token: token)
        let aal2 = try #require(enrolled.aal2["access_token"] as? String)
        let license = "[license]\npublic_key = \"\(ByteEncoding.hex(first.vendor.publicKey))\"\n"

        // A second kernel given the first one's key set ([kernel] keys_dir).
        let keys = first.kernel.kernel.config.keysDirectory
        let second = try await TestKernel.start("[kernel]\nkeys_dir = \"\(keys)\"\n" + license + Self.toml, conninfo: first.conninfo)
        #expect(!FileManager.default.fileExists(atPath: second.kernel.config.dataDirectory + "/" + SecretBox.fileName), "no key of its own")
        let onSecond = Instance(kernel: second, email: first.email, conninfo: first.conninfo, vendor: first.vendor)
        #expect(try await onSecond.request("/v1/hub/portals", token: aal2).status == 200, "the first kernel's token works on the second")
        let pending = try await onSecond.accessToken()
        let code = IndependentTOTP.code(base32Secret: enrolled.secret, at: Date().addingTimeInterval(30))
        let challenged = try await onSecond.request("/v1/admin/mfa/challenge", method: .POST, json: ["code": code], token: pending)
        #expect(challenged.status == 200, "\(challenged.body)")

        // A third kernel with its own (different) key set refuses to start and names the key.
        let refusal = await #expect(throws: TestFailure.self) { try await TestKernel.start(license + Self.toml, conninfo: first.conninfo) }
        #expect(refusal?.description.contains("this kernel's sealing key") == true, "\(refusal?.description ?? "")")
        #expect(refusal?.description.contains("keys_dir") == true)
        await second.stop()
        await first.kernel.stop()
    }

    // MARK: Admin users

    @Test("admin users: aal2 creates one within the license's seats; past the cap 403 seat_limit names it")
    func seats() async throws {
        let instance = try await Self.instance(seats: 2)
        let aal1 = try await instance.accessToken()
        let second = "second-\(UUID().uuidString.prefix(6).lowercased())@example.com"
        let refused = try await instance.request("/v1/admin/users", method: .POST, json: ["email": second, "password": Self.password], token: aal1)
        #expect(refused.status == 403 && refused.json["code"] as? String == "aal2_required")
        let aal2 = try #require(try await Self.enrol(instance, token: aal1).aal2["access_token"] as? String)

        let weak = try await instance.request("/v1/admin/users", method: .POST, json: ["email": second, "password": "password1234"], token: aal2)
        #expect(weak.status == 400 && weak.json["code"] as? String == "password_policy")
        let created = try await instance.request("/v1/admin/users", method: .POST, json: ["email": second, "password": Self.password], token: aal2)
        #expect(created.status == 201, "\(created.body)")
        #expect(created.json["email"] as? String == second && created.json["role"] as? String == "admin")
        let third = try await instance.request("/v1/admin/users", method: .POST, json: ["email": "third@example.com", "password": Self.password], token: aal2)
        #expect(third.status == 403 && third.json["code"] as? String == "seat_limit", "\(third.body)")
        #expect((third.json["message"] as? String)?.contains("2 admin accounts") == true)

        let users = try await instance.request("/v1/admin/users", token: aal2)
        let emails = (users.json["users"] as? [[String: Any]])?.compactMap { $0["email"] as? String }
        #expect(emails == [instance.email, second])
        // The new admin signs in (aal1, no TOTP yet) and may read but not configure.
        let newcomer = try await instance.accessToken(second)
        #expect(try await instance.request("/v1/admin/users", token: newcomer).status == 200)
        #expect(try await instance.request("/v1/hub/portals", method: .POST, json: ["name": "nope"], token: newcomer).status == 403)
        let license = try await instance.request("/v1/system/license", token: newcomer)
        #expect(license.json["seats"] as? Int == 2 && license.json["seats_used"] as? Int == 2)
        let audit = try await instance.database().query("SELECT actor, target FROM meltybase.audit_log WHERE action = 'admin.user.create'")
        #expect(audit.rows.first == ["admin:\(instance.email)", second])
        await instance.kernel.stop()
    }

    // MARK: Audit routes

    @Test("GET /v1/audit filters by action, actor and time and pages by seq; /v1/audit/verify checks the chain")
    func auditRoutes() async throws {
        let instance = try await Self.instance()
        let before = Date()
        _ = try await instance.login(password: "Wrong-Password-for-audit-1")
        let token = try await instance.accessToken()
        _ = try await instance.accessToken()
        #expect(try await instance.request("/v1/audit").status == 401)

        let all = try await instance.request("/v1/audit", token: token)
        #expect(all.status == 200, "\(all.body)")
        let entries = try #require(all.json["entries"] as? [[String: Any]])
        #expect(entries.map { $0["action"] as? String } == ["system.setup", "admin.login_failed", "admin.login", "admin.login"])
        #expect(all.json["next_after"] is NSNull)
        #expect(entries.allSatisfy { ($0["hash"] as? String)?.count == 64 && $0["prev_hash"] != nil && $0["details"] is [String: Any] })

        var seen: [Int] = []
        var after = 0
        while true {
            let page = try await instance.request("/v1/audit?limit=2&after=\(after)", token: token)
            let items = try #require(page.json["entries"] as? [[String: Any]])
            seen += items.compactMap { $0["seq"] as? Int }
            guard let next = page.json["next_after"] as? Int else { break }
            #expect(items.count == 2 && next == seen.last)
            after = next
        }
        #expect(seen == [1, 2, 3, 4])

        let logins = try await instance.request("/v1/audit?action=admin.login", token: token)
        #expect((logins.json["entries"] as? [[String: Any]])?.count == 2)
        let byActor = try await instance.request("/v1/audit?actor=anonymous", token: token)
        #expect((byActor.json["entries"] as? [[String: Any]])?.map { $0["action"] as? String } == ["admin.login_failed"])
        let since = ISO8601DateFormatter().string(from: before.addingTimeInterval(-1))
        let recent = try await instance.request("/v1/audit?since=\(since)&action=admin.login_failed", token: token)
        #expect((recent.json["entries"] as? [[String: Any]])?.count == 1, "\(recent.body)")
        let future = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3600))
        #expect((try await instance.request("/v1/audit?since=\(future)", token: token).json["entries"] as? [Any])?.isEmpty == true)
        let untilPast = try await instance.request("/v1/audit?until=2000-01-01", token: token)
        #expect((untilPast.json["entries"] as? [Any])?.isEmpty == true, "\(untilPast.body)")
        for bad in ["limit=0", "limit=abc", "after=-1", "since=yesterday", "colour=red"] {
            let response = try await instance.request("/v1/audit?\(bad)", token: token)
            #expect(response.status == 400 && response.json["code"] as? String == "invalid_parameter", "\(bad): \(response.body)")
        }

        let verify = try await instance.request("/v1/audit/verify", token: token)
        #expect(verify.status == 200, "\(verify.body)")
        #expect(verify.json["ok"] as? Bool == true && verify.json["entries"] as? Int == 4 && verify.json["problem"] is NSNull)
        await instance.kernel.stop()
    }

    // MARK: Independent TOTP

    /// `oathtool --totp -b SECRET` at `date` (oathtool is installed by scripts/setup.sh --test).
    static func oathtool(secret: String, at date: Date) throws -> String {
        let stamp = ISO8601DateFormatter().string(from: date).replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: " UTC")
        let result = try runProcess("oathtool", ["--totp", "-b", "--now", stamp, secret])
        guard result.status == 0 else { throw TestFailure("oathtool failed: \(result.output)") }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A second RFC 6238 implementation, written from the RFC and sharing no code with the
/// kernel's `TOTP` (own base32 decoding, own truncation): HMAC-SHA-1, 6 digits, 30 s.
enum IndependentTOTP {
    static func code(base32Secret: String, at date: Date) -> String {
        var key: [UInt8] = []
        var accumulator = 0
        var bitCount = 0
        for character in base32Secret.uppercased() where character != "=" {
            let value: Int
            if let ascii = character.asciiValue, (65...90).contains(ascii) {
                value = Int(ascii) - 65
            } else if let ascii = character.asciiValue, (50...55).contains(ascii) {
                value = Int(ascii) - 50 + 26
            } else {
                continue
            }
            accumulator = (accumulator << 5) | value
            bitCount += 5
            if bitCount >= 8 {
                key.append(UInt8((accumulator >> (bitCount - 8)) & 0xff))
                bitCount -= 8
                accumulator &= (1 << bitCount) - 1
            }
        }
        let counter = UInt64(date.timeIntervalSince1970) / 30
        let message = (0..<8).map { UInt8((counter >> (8 * (7 - UInt64($0)))) & 0xff) }
        let mac = Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: key)))
        let offset = Int(mac[19] & 0x0f)
        let number = (Int(mac[offset]) & 0x7f) << 24 | Int(mac[offset + 1]) << 16 | Int(mac[offset + 2]) << 8 | Int(mac[offset + 3])
        return String(format: "%06d", number % 1_000_000)
    }
}
