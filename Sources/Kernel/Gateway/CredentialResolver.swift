import Foundation
import HTTPTypes
import MeltyJSON
import Synchronization

/// Verifies the token a portal request carries and describes it for the plugin as the
/// `credential_json` of `mb_host_request` (see meltybase_plugin.h): a JWT of the portal
/// (API key or user token), a kernel admin token, none, or invalid with the reason.
///
/// The token comes from `Authorization: Bearer`, else the `apikey` header (Supabase
/// clients send the API key in both), else, for WebSocket upgrades, the `apikey` query
/// parameter (browsers cannot set headers on a WebSocket).
///
/// Verified portal tokens are cached per (portal, token) for at most 30 seconds and never past
/// the token's `exp`: clients send the same key with every request, and verifying it is
/// most of the gateway's cost for a small REST call. Deleting a portal empties the cache.
///
/// An admin access token on a portal route is refused here, for every plugin, unless its
/// session is live and at AAL2 and, with `[admin] require_client_certificate`, the
/// connection presented a verified client certificate (``AdminIdentity/portalRouteAdmin``).
struct CredentialResolver: Sendable {
    let portalKeys: PortalKeys?
    let adminIdentity: AdminIdentity?
    let adminRequiresClientCertificate: Bool
    private let cache = VerifiedTokenCache()

    init(portalKeys: PortalKeys?, adminIdentity: AdminIdentity?, adminRequiresClientCertificate: Bool) {
        self.portalKeys = portalKeys
        self.adminIdentity = adminIdentity
        self.adminRequiresClientCertificate = adminRequiresClientCertificate
    }

    private static let none = Array(#"{"kind":"none"}"#.utf8)

    /// The credential JSON for a request to `portal`; throws a ``GatewayError`` (401/403) for
    /// an admin token that may not act on portal routes.
    func credentialJSON(for headers: HTTPFields, portal: String, query: String? = nil, clientCertificatePresented: Bool = false) async throws -> [UInt8] {
        guard let token = Self.token(headers: headers, query: query) else { return Self.none }
        let generation = portalKeys?.generation ?? 0
        let now = Date().timeIntervalSince1970
        // An apikey sent beside a different bearer token must be this portal's too (as the
        // Supabase gateway checks it): a user token does not make a foreign key acceptable.
        if let apikey = headers[Self.apikeyField].map(Self.trimmed), !apikey.isEmpty, apikey != token,
            cache.lookup(portal: portal, token: apikey, generation: generation, now: now) == nil
        {
            let checked = try await credential(token: apikey, portal: portal, clientCertificatePresented: clientCertificatePresented)
            guard checked["kind"] == .string("portal") else {
                return Self.encode(["kind": .string("invalid"), "reason": .string("the apikey header is not a key of portal \"\(portal)\"")])
            }
            if case .object(let claims)? = checked["claims"] {
                cache.store(
                    portal: portal, token: apikey, json: Self.encode(checked), generation: generation,
                    expiry: min(now + 30, claims["exp"]?.numberValue ?? now + 30))
            }
        }
        if let hit = cache.lookup(portal: portal, token: token, generation: generation, now: now) { return hit }
        let value = try await credential(token: token, portal: portal, clientCertificatePresented: clientCertificatePresented)
        return described(value, portal: portal, token: token, generation: generation, now: now)
    }

    /// `value` encoded, and cached when it is a verified portal token: an invalid one costs
    /// its sender, and an admin token must stop working the moment its session is revoked.
    private func described(_ value: [String: JSONValue], portal: String, token: String, generation: Int, now: Double) -> [UInt8] {
        let json = Self.encode(value)
        if value["kind"] == .string("portal") {
            var expiry = now + 30
            if case .object(let claims)? = value["claims"], let exp = claims["exp"]?.numberValue { expiry = min(expiry, exp) }
            cache.store(portal: portal, token: token, json: json, generation: generation, expiry: expiry)
        }
        return json
    }

    /// The credential JSON for a token a plugin received outside the HTTP headers (the
    /// `access_token` of a WebSocket message; `portal_token_verify`): the same checks and
    /// cache as a request carrying it as `Authorization: Bearer`. An admin token a portal
    /// route would refuse is described as invalid with the refusal's message; no client
    /// certificate comes with such a token. Throws when the check itself could not run.
    func credentialJSON(token rawToken: String, portal: String) async throws -> [UInt8] {
        let token = Self.trimmed(rawToken)
        guard !token.isEmpty else { return Self.none }
        let generation = portalKeys?.generation ?? 0
        let now = Date().timeIntervalSince1970
        if let hit = cache.lookup(portal: portal, token: token, generation: generation, now: now) { return hit }
        let value: [String: JSONValue]
        do {
            value = try await credential(token: token, portal: portal, clientCertificatePresented: false)
        } catch let refusal as GatewayError {
            return Self.encode(["kind": .string("invalid"), "reason": .string(refusal.message)])
        }
        return described(value, portal: portal, token: token, generation: generation, now: now)
    }

    /// The credential JSON when it is known without verifying anything: no token, or
    /// tokens found in the cache. Nil when ``credentialJSON(for:portal:query:clientCertificatePresented:)``
    /// has work to do (the gateway's direct path then hands the request to the router).
    func knownCredentialJSON(for headers: HTTPFields, portal: String) -> [UInt8]? {
        guard let token = Self.token(headers: headers, query: nil) else { return Self.none }
        let generation = portalKeys?.generation ?? 0
        let now = Date().timeIntervalSince1970
        if let apikey = headers[Self.apikeyField].map(Self.trimmed), !apikey.isEmpty, apikey != token,
            cache.lookup(portal: portal, token: apikey, generation: generation, now: now) == nil
        {
            return nil
        }
        return cache.lookup(portal: portal, token: token, generation: generation, now: now)
    }

    static let apikeyField = HTTPField.Name("apikey")!

    /// `text` without surrounding spaces and tabs (cheaper than Foundation's trimming).
    static func trimmed<S: StringProtocol>(_ text: S) -> String {
        let bytes = Array(text.utf8)
        guard let first = bytes.firstIndex(where: { $0 != 0x20 && $0 != 0x09 }),
            let last = bytes.lastIndex(where: { $0 != 0x20 && $0 != 0x09 })
        else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }

    /// The bearer token, else the API key, else the `apikey` query parameter.
    static func token(headers: HTTPFields, query: String?) -> String? {
        if let authorization = headers[.authorization] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                let token = trimmed(parts[1])
                if !token.isEmpty { return token }
            }
        }
        if let key = headers[apikeyField].map(trimmed), !key.isEmpty { return key }
        if let query, let item = URLComponents(string: "?" + query)?.queryItems?.first(where: { $0.name == "apikey" }), let value = item.value, !value.isEmpty {
            return value
        }
        return nil
    }

    private func credential(token: String, portal: String, clientCertificatePresented: Bool) async throws -> [String: JSONValue] {
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
        if let adminIdentity {
            let principal: AdminPrincipal?
            do {
                principal = try await adminIdentity.portalRouteAdmin(
                    token: token, clientCertificatePresented: clientCertificatePresented, certificateRequired: adminRequiresClientCertificate)
            } catch let error as IdentityError {
                throw AdminHTTP.gatewayError(error)
            }
            if let principal {
                return [
                    "kind": .string("admin"), "role": .string("admin"), "subject": .string(principal.adminID), "aal": .string(principal.aal.rawValue),
                    "claims": .object([
                        "sub": .string(principal.adminID), "email": .string(principal.admin.email), "role": .string(principal.admin.role),
                        "aal": .string(principal.aal.rawValue), "session_id": .string(principal.sessionID),
                    ]),
                ]
            }
        }
        return ["kind": .string("invalid"), "reason": .string(portalFailure)]
    }

    private static func encode(_ value: [String: JSONValue]) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? Array(encoder.encode(value))) ?? Array(#"{"kind":"invalid","reason":"the credential could not be described"}"#.utf8)
    }
}

/// Verified credential JSON by (portal, token), bounded in size and age.
final class VerifiedTokenCache: Sendable {
    private struct Entry {
        let json: [UInt8]
        let generation: Int
        let expiry: Double
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let capacity = 10_000

    func lookup(portal: String, token: String, generation: Int, now: Double) -> [UInt8]? {
        let key = portal + "\u{0}" + token
        return entries.withLock { entries in
            guard let entry = entries[key] else { return nil }
            guard entry.generation == generation, entry.expiry > now else {
                entries[key] = nil
                return nil
            }
            return entry.json
        }
    }

    func store(portal: String, token: String, json: [UInt8], generation: Int, expiry: Double) {
        entries.withLock { entries in
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[portal + "\u{0}" + token] = Entry(json: json, generation: generation, expiry: expiry)
        }
    }
}
