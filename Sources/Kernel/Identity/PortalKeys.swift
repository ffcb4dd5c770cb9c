import CSodium
import Foundation
import JWTKit
import MeltyEd25519
import MeltyJSON
import NIOConcurrencyHelpers

/// The claims of a portal JWT (API keys and the user tokens plugins mint): any JSON object.
/// An `exp` claim, when present, must lie in the future.
struct PortalClaims: JWTPayload {
    var values: [String: JSONValue]

    init(values: [String: JSONValue]) { self.values = values }

    init(from decoder: Decoder) throws {
        values = try decoder.singleValueContainer().decode([String: JSONValue].self)
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(values)
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {
        if let exp = values["exp"] {
            guard let seconds = exp.numberValue else { throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "exp is not a number") }
            guard seconds > Date().timeIntervalSince1970 else { throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "expired") }
        }
    }
}

/// Each portal's JWT secret: signs the portal's API keys (`anon`, `service_role`) and the
/// user tokens its plugins mint, and verifies every portal credential the gateway sees.
///
/// The secret is 32 random bytes created with the portal, kept sealed in
/// `meltybase.portal_jwt_secrets` under the data directory's secret-box key (never in
/// plaintext on disk), and never handed to a plugin: plugins sign through the host.
public final class PortalKeys: Sendable {
    /// Lifetime of the API keys `issueAPIKey` mints (Supabase's keys last ten years too).
    public static let apiKeyLifetime: TimeInterval = 10 * 365 * 24 * 3600
    private let database: SystemDatabase
    private let box: SecretBox
    private let collections = NIOLockedValueBox<[String: JWTKeyCollection]>([:])
    private let generationBox = NIOLockedValueBox(0)

    /// Bumped whenever a portal's key is forgotten (portal deleted): caches of verified tokens compare it.
    var generation: Int { generationBox.withLockedValue { $0 } }

    /// Keys stored in `database`, sealed with the sealing key in `keysDirectory`.
    public convenience init(database: SystemDatabase, keysDirectory: String) throws {
        self.init(database: database, box: try SecretBox.loadOrCreate(directory: keysDirectory))
    }

    /// Keys stored in `database`, sealed with `box`.
    public init(database: SystemDatabase, box: SecretBox) {
        self.database = database
        self.box = box
    }

    /// A JWT for `portal` with `role` ("anon", "service_role", ...), valid for ten years.
    public func issueAPIKey(portal: String, role: String) async throws -> String {
        let now = Date().timeIntervalSince1970.rounded(.down)
        return try await sign(
            portal: portal,
            claims: [
                "iss": .string("meltybase"), "ref": .string(portal), "role": .string(role),
                "iat": .number(now), "exp": .number(now + Self.apiKeyLifetime),
            ])
    }

    /// Signs `claims` with the portal's secret (HS256).
    public func sign(portal: String, claims: [String: JSONValue]) async throws -> String {
        try await collection(portal).sign(PortalClaims(values: claims))
    }

    /// The claims of `token` when it is an HS256 JWT signed with `portal`'s secret and not
    /// expired; otherwise ``IdentityError`` 401 naming the reason.
    public func verify(portal: String, token: String) async throws -> [String: JSONValue] {
        try HS256HeaderCheck.require(token, noun: "the token", kind: "portal")
        do {
            let claims = try await collection(portal).verify(token, as: PortalClaims.self).values
            if let ref = claims["ref"]?.stringValue, ref != portal {
                throw IdentityError.unauthenticated("the token belongs to another portal")
            }
            return claims
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            throw IdentityError.unauthenticated("the token has expired")
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw IdentityError.unauthenticated("the token's signature does not verify for portal \"\(portal)\"")
        } catch let error as IdentityError {
            throw error
        } catch is PostgresError, is PostgresPoolError {
            throw IdentityError(
                status: 503, code: "database_unavailable", message: "the portal key cannot be read: the system database is unavailable", hint: "retry shortly", retryAfterSeconds: 1
            )
        } catch {
            throw IdentityError.unauthenticated("the token is malformed")
        }
    }

    /// Seals a plugin's secret for storage (`secret_seal`), bound to the plugin, the portal and `context`.
    public func sealPluginSecret(_ plaintext: [UInt8], plugin: String, portal: String, context: String) -> String {
        box.seal(plaintext, context: Self.pluginSecretContext(plugin: plugin, portal: portal, context: context))
    }

    /// Opens what ``sealPluginSecret(_:plugin:portal:context:)`` sealed for the same plugin, portal and
    /// context (`secret_open`); throws ``IdentityError`` for a value altered, moved or sealed under another key.
    public func openPluginSecret(_ sealed: String, plugin: String, portal: String, context: String) throws -> [UInt8] {
        try box.open(sealed, context: Self.pluginSecretContext(plugin: plugin, portal: portal, context: context))
    }

    /// Length-prefixed parts, so no choice of names makes two bindings equal.
    private static func pluginSecretContext(plugin: String, portal: String, context: String) -> String {
        "plugin-secret:\(plugin.utf8.count):\(plugin):\(portal.utf8.count):\(portal):\(context)"
    }

    /// Verifies and signs `portal`'s tokens with `secret` from now on, without reading the
    /// database: for tests and the credentials fuzz target (`Fuzz/`), which check
    /// ``verify(portal:token:)`` without a system database. The kernel never calls it.
    func useSecret(_ secret: [UInt8], for portal: String) async {
        let collection = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        collections.withLockedValue { $0[portal] = collection }
    }

    /// Forgets cached keys of portals not in `names` (deleted portals; a re-created portal gets a new secret).
    func retainOnly(_ names: Set<String>) {
        let dropped = collections.withLockedValue { cache -> Bool in
            let before = cache.count
            cache = cache.filter { names.contains($0.key) }
            return cache.count != before
        }
        if dropped { generationBox.withLockedValue { $0 += 1 } }
    }

    private func collection(_ portal: String) async throws -> JWTKeyCollection {
        if let cached = collections.withLockedValue({ $0[portal] }) { return cached }
        var secret = try await loadOrCreateSecret(portal)
        defer { sodium_memzero(&secret, secret.count) }
        let collection = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return collections.withLockedValue { cache in
            if let existing = cache[portal] { return existing }
            cache[portal] = collection
            return collection
        }
    }

    /// The portal's secret, created on first use (portals made before keys existed get one too).
    private func loadOrCreateSecret(_ portal: String) async throws -> [UInt8] {
        let box = self.box
        return try await database.withConnection { connection in
            let context = "portal-jwt:" + portal
            if let sealed = try await connection.query("SELECT secret_sealed FROM meltybase.portal_jwt_secrets WHERE portal = $1", [portal]).rows.first?[0] ?? nil {
                return try box.open(sealed, context: context)
            }
            guard try await !connection.query("SELECT 1 FROM meltybase.portals WHERE name = $1", [portal]).rows.isEmpty else {
                throw IdentityError(status: 404, code: "portal_not_found", message: "portal \"\(portal)\" does not exist", hint: nil)
            }
            var fresh = [UInt8](repeating: 0, count: 32)
            randombytes_buf(&fresh, fresh.count)
            defer { sodium_memzero(&fresh, fresh.count) }
            try await connection.query(
                "INSERT INTO meltybase.portal_jwt_secrets (portal, secret_sealed) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                [portal, box.seal(fresh, context: context)])
            // Another kernel may have won the race: read back what is stored.
            guard let sealed = try await connection.query("SELECT secret_sealed FROM meltybase.portal_jwt_secrets WHERE portal = $1", [portal]).rows.first?[0] ?? nil else {
                throw IdentityError.internalFailure("the portal secret was not stored")
            }
            return try box.open(sealed, context: context)
        }
    }
}
