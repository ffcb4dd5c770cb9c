import Foundation
import HTTPTypes

/// Verifies the token a portal request carries and describes it for the plugin as the
/// `credential_json` of `mb_host_request` (see meltybase_plugin.h): a JWT of the portal
/// (API key or user token), a kernel admin token, none, or invalid with the reason.
///
/// The token comes from `Authorization: Bearer`, else the `apikey` header (Supabase
/// clients send the API key in both), else, for WebSocket upgrades, the `apikey` query
/// parameter (browsers cannot set headers on a WebSocket).
struct CredentialResolver: Sendable {
    let portalKeys: PortalKeys?
    let adminTokens: AdminTokens?

    private static let none = Array(#"{"kind":"none"}"#.utf8)

    /// The credential JSON for a request to `portal`.
    func credentialJSON(for headers: HTTPFields, portal: String, query: String? = nil) async -> [UInt8] {
        guard let token = Self.token(headers: headers, query: query) else { return Self.none }
        return Self.encode(await credential(token: token, portal: portal))
    }

    /// The bearer token, else the API key, else the `apikey` query parameter.
    static func token(headers: HTTPFields, query: String?) -> String? {
        if let authorization = headers[.authorization] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                let token = parts[1].trimmingCharacters(in: .whitespaces)
                if !token.isEmpty { return token }
            }
        }
        if let name = HTTPField.Name("apikey"), let key = headers[name]?.trimmingCharacters(in: .whitespaces), !key.isEmpty { return key }
        if let query, let item = URLComponents(string: "?" + query)?.queryItems?.first(where: { $0.name == "apikey" }), let value = item.value, !value.isEmpty {
            return value
        }
        return nil
    }

    private func credential(token: String, portal: String) async -> [String: JSONValue] {
        var portalFailure = "portal tokens are not available on this kernel"
        if let portalKeys {
            do {
                let claims = try await portalKeys.verify(portal: portal, token: token)
                return [
                    "kind": .string("portal"), "role": claims["role"] ?? .null, "subject": claims["sub"] ?? .null,
                    "aal": claims["aal"] ?? .null, "claims": .object(claims),
                ]
            } catch let error as IdentityError {
                portalFailure = error.message
            } catch {
                portalFailure = "the token does not verify"
            }
        }
        // Not this portal's: perhaps a kernel admin's access token.
        if let adminTokens, let claims = try? await adminTokens.verify(token) {
            return [
                "kind": .string("admin"), "role": .string("admin"), "subject": .string(claims.sub.value), "aal": .string(claims.aal.rawValue),
                "claims": .object([
                    "sub": .string(claims.sub.value), "email": .string(claims.email), "role": .string(claims.role),
                    "aal": .string(claims.aal.rawValue), "session_id": .string(claims.sessionID),
                ]),
            ]
        }
        return ["kind": .string("invalid"), "reason": .string(portalFailure)]
    }

    private static func encode(_ value: [String: JSONValue]) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? Array(encoder.encode(value))) ?? Array(#"{"kind":"invalid","reason":"the credential could not be described"}"#.utf8)
    }
}
