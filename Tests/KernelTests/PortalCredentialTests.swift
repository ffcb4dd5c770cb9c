import Foundation
import JWTKit
import Testing

@testable import Kernel

/// ABI 1.1: the kernel verifies portal and admin tokens and hands plugins the result,
/// signs JWTs for plugins without showing them the secret, and routes extra prefixes.
@Suite("Portal credentials, JWT signing for plugins and extra route prefixes (ABI 1.1, 1.2)", .timeLimit(.minutes(3)))
struct PortalCredentialTests {
    static let toml = """
        [[listeners]]
        host = "127.0.0.1"
        port = 0
        [plugins.echo-swift]
        path = "{ECHO_SWIFT}"
        [portals.alpha]
        plugins = ["echo-swift"]
        [portals.beta]
        plugins = ["echo-swift"]
        """

    static func credential(_ kernel: TestKernel, portal: String = "alpha", prefix: String = "echo-swift", headers: [(String, String)]) async throws -> [String: Any] {
        let response = try await kernel.request("/p/\(portal)/\(prefix)/credential", headers: headers)
        #expect(response.status == 200, "\(response.body)")
        return try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
    }

    @Test("no token is none; a portal's API key is a portal credential with its role, from Authorization or apikey")
    func apiKeys() async throws {
        let kernel = try await TestKernel.start(Self.toml)
        defer { Task { await kernel.stop() } }
        let keys = try #require(kernel.kernel.portalKeys)
        let none = try await Self.credential(kernel, headers: [])
        #expect(none["kind"] as? String == "none")
        #expect(none["has_conninfo"] as? Bool == true)

        let anon = try await keys.issueAPIKey(portal: "alpha", role: "anon")
        let viaApikey = try await Self.credential(kernel, headers: [("apikey", anon)])
        #expect(viaApikey["kind"] as? String == "portal" && viaApikey["role"] as? String == "anon", "\(viaApikey)")
        let service = try await keys.issueAPIKey(portal: "alpha", role: "service_role")
        // Authorization wins over apikey, as in Supabase.
        let both = try await Self.credential(kernel, headers: [("apikey", anon), ("authorization", "Bearer \(service)")])
        #expect(both["role"] as? String == "service_role", "\(both)")
    }

    @Test("a key of another portal, an expired token, a tampered one and alg none are invalid with a reason")
    func refusals() async throws {
        let kernel = try await TestKernel.start(Self.toml)
        defer { Task { await kernel.stop() } }
        let keys = try #require(kernel.kernel.portalKeys)
        let betaKey = try await keys.issueAPIKey(portal: "beta", role: "service_role")
        let crossed = try await Self.credential(kernel, portal: "alpha", headers: [("apikey", betaKey)])
        #expect(crossed["kind"] as? String == "invalid", "\(crossed)")
        #expect((crossed["reason"] as? String)?.contains("alpha") == true, "\(crossed)")
        #expect(try await Self.credential(kernel, portal: "beta", headers: [("apikey", betaKey)])["kind"] as? String == "portal")

        let expired = try await keys.sign(portal: "alpha", claims: ["role": .string("anon"), "exp": .number(Date().timeIntervalSince1970 - 10)])
        let old = try await Self.credential(kernel, headers: [("authorization", "Bearer \(expired)")])
        #expect(old["kind"] as? String == "invalid" && (old["reason"] as? String)?.contains("expired") == true, "\(old)")

        let good = try await keys.issueAPIKey(portal: "alpha", role: "anon")
        var parts = good.split(separator: ".").map(String.init)
        let forged = try JSONSerialization.data(withJSONObject: ["role": "service_role", "ref": "alpha"])
        parts[1] = forged.base64EncodedString().replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        let tampered = try await Self.credential(kernel, headers: [("apikey", parts.joined(separator: "."))])
        #expect(tampered["kind"] as? String == "invalid", "\(tampered)")

        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
        #expect(try await Self.credential(kernel, headers: [("apikey", none)])["kind"] as? String == "invalid")
        #expect(try await Self.credential(kernel, headers: [("authorization", "Bearer not-a-jwt")])["kind"] as? String == "invalid")
    }

    @Test("a kernel admin's access token whose session does not exist is refused by the kernel on portal routes")
    func adminToken() async throws {
        let kernel = try await TestKernel.start(Self.toml)
        defer { Task { await kernel.stop() } }
        let tokens = AdminTokens(database: SystemDatabase(conninfo: kernel.conninfo))
        let now = Date()
        let token = try await tokens.sign(
            AdminAccessClaims(
                sub: .init(value: UUID().uuidString), email: "root@example.com", role: "root", aal: .aal2, amr: ["pwd", "otp"],
                sessionID: UUID().uuidString, iat: .init(value: now), exp: .init(value: now.addingTimeInterval(60))))
        // Signature and expiry are fine; the session is not in the database (signed out,
        // revoked, or never there): the kernel refuses before any plugin sees the request.
        let refused = try await kernel.request("/p/alpha/echo-swift/credential", headers: [("authorization", "Bearer \(token)")])
        #expect(refused.status == 401, "\(refused.body)")
        #expect(HTTP.json(refused.body)["code"] as? String == "admin_session_ended", "\(refused.body)")
    }

    @Test("a plugin signs claims through the host; the token verifies as this portal's and no other")
    func pluginSigning() async throws {
        let kernel = try await TestKernel.start(Self.toml)
        defer { Task { await kernel.stop() } }
        let keys = try #require(kernel.kernel.portalKeys)
        let service = try await keys.issueAPIKey(portal: "alpha", role: "service_role")
        let anon = try await keys.issueAPIKey(portal: "alpha", role: "anon")
        let asService = [("authorization", "Bearer \(service)")]
        let refusedForAnon = try await kernel.request(
            "/p/alpha/echo-swift/sign", method: .POST, body: #"{"role":"authenticated","sub":"user-1"}"#,
            headers: [("authorization", "Bearer \(anon)")])
        #expect(refusedForAnon.status == 403, "\(refusedForAnon.body)")
        for claims in [
            #"{"role":"service_role","sub":"x"}"#, #"{"role":"anon","sub":"x"}"#, #"{"sub":"x"}"#,
            #"{"role":"authenticated"}"#, #"{"role":"authenticated","sub":"x","exp":4102444800}"#,
        ] {
            let minted = try await kernel.request("/p/alpha/echo-swift/sign", method: .POST, body: claims, headers: asService)
            #expect(minted.status == 403, "\(claims) → \(minted.body)")
        }
        let signed = try await kernel.request("/p/alpha/echo-swift/sign", method: .POST, body: #"{"role":"authenticated","sub":"user-1","aal":"aal1"}"#, headers: asService)
        #expect(signed.status == 200, "\(signed.body)")
        let token = try #require((try JSONSerialization.jsonObject(with: Data(signed.body.utf8)) as? [String: Any])?["token"] as? String)
        let user = try await Self.credential(kernel, headers: [("authorization", "Bearer \(token)")])
        #expect(user["kind"] as? String == "portal" && user["role"] as? String == "authenticated" && user["subject"] as? String == "user-1", "\(user)")
        #expect(try await Self.credential(kernel, portal: "beta", headers: [("authorization", "Bearer \(token)")])["kind"] as? String == "invalid")
        let bad = try await kernel.request("/p/alpha/echo-swift/sign", method: .POST, body: "[1,2]", headers: asService)
        #expect(bad.status == 400)
    }

    @Test("a plugin seals a secret through the host (ABI 1.2); it opens only for the same portal and context, and a changed byte is refused")
    func pluginSecrets() async throws {
        let kernel = try await TestKernel.start(Self.toml)
        defer { Task { await kernel.stop() } }
        let sealedResponse = try await kernel.request("/p/alpha/echo-swift/seal?context=row-1", method: .POST, body: "totp seed 123")
        #expect(sealedResponse.status == 200, "\(sealedResponse.body)")
        let sealed = try #require((try JSONSerialization.jsonObject(with: Data(sealedResponse.body.utf8)) as? [String: Any])?["sealed"] as? String)
        #expect(sealed.hasPrefix("xc1:") && !sealed.contains("totp seed"))
        let opened = try await kernel.request("/p/alpha/echo-swift/open?context=row-1", method: .POST, body: sealed)
        #expect(opened.status == 200 && opened.body.contains("totp seed 123"), "\(opened.body)")
        for (path, body) in [
            ("/p/alpha/echo-swift/open?context=row-2", sealed), ("/p/beta/echo-swift/open?context=row-1", sealed),
            ("/p/alpha/echo-swift/open?context=row-1", Self.changedCiphertext(sealed)),
        ] {
            let refused = try await kernel.request(path, method: .POST, body: body)
            #expect(refused.status == 422 && refused.body.contains("open_refused") && !refused.body.contains("totp seed"), "\(path): \(refused.body)")
        }
        let garbage = try await kernel.request("/p/alpha/echo-swift/open?context=row-1", method: .POST, body: "not sealed")
        #expect(garbage.status == 400 && garbage.body.contains("not a sealed secret"), "\(garbage.body)")
    }

    /// `sealed` with one character of its ciphertext changed (well inside it, so no padding bit).
    static func changedCiphertext(_ sealed: String) -> String {
        var characters = Array(sealed)
        let index = (sealed.lastIndex(of: ":").map { sealed.distance(from: sealed.startIndex, to: $0) } ?? 0) + 5
        characters[index] = characters[index] == "A" ? "B" : "A"
        return String(characters)
    }

    @Test("extra route prefixes reach the same plugin, which learns the prefix that matched")
    func extraPrefixes() async throws {
        let kernel = try await TestKernel.start(Self.toml)
        defer { Task { await kernel.stop() } }
        #expect(try await Self.credential(kernel, prefix: "echo-swift-alt", headers: [])["prefix"] as? String == "echo-swift-alt")
        #expect(try await Self.credential(kernel, prefix: "echo-swift", headers: [])["prefix"] as? String == "echo-swift")
    }
}
