import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The admin-facing routes: `/v1/admin/*` (sign-in, tokens, MFA, admin users),
/// `/v1/hub/*` (portal configuration), `/v1/audit` and `/v1/system/license`. Handlers are
/// thin: they parse, call ``AdminIdentity`` to authorize, call the domain, and render.
struct HubRoutes: Sendable {
    let identity: AdminIdentity
    let portals: PortalStore
    let database: SystemDatabase
    let dataDirectory: String
    let licensePublicKey: String?
    /// Mints the API keys shown once when a portal is created.
    var portalKeys: PortalKeys? = nil

    func register(on router: some RouterMethods<KernelRequestContext>) {
        AdminRoutes(identity: identity).register(on: router)
        HubPortalRoutes(identity: identity, store: portals, keys: portalKeys).register(on: router)
        AuditRoute(identity: identity, database: database, dataDirectory: dataDirectory).register(on: router)
        LicenseRoute(identity: identity, database: database, publicKey: licensePublicKey).register(on: router)
        router.get("/v1/system/license") { request, _ in
            try await HubHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                return HubHTTP.json(try await identity.licenseSummary())
            }
        }
    }
}

/// Request parsing, JSON responses and error mapping shared by the Hub routes.
enum HubHTTP {
    /// Largest JSON body the admin routes read.
    static let bodyLimit = 64 * 1024

    /// The body decoded as `Body` (string members), or 400: `invalid_json` showing the
    /// expected shape when it is not a JSON object, `invalid_field` naming a member that is
    /// missing or not a string.
    static func decode<Body: Decodable>(_ type: Body.Type, from request: Request, expected: String) async throws -> Body {
        let body = try await request.body.collect(upTo: bodyLimit)
        do {
            return try JSONDecoder().decode(type, from: Data(body.readableBytesView))
        } catch let error as DecodingError {
            if let field = field(of: error) { throw gatewayError(IdentityError.invalidField(field, "\(field) is required (a string)")) }
            throw GatewayError(status: 400, code: "invalid_json", message: "the body must be a JSON object", hint: "send \(expected)")
        }
    }

    /// The top-level member a decoding error is about, or nil when the body itself is wrong.
    private static func field(of error: DecodingError) -> String? {
        switch error {
        case .keyNotFound(let key, let context): return context.codingPath.first?.stringValue ?? key.stringValue
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return context.codingPath.first?.stringValue
        case .dataCorrupted: return nil
        @unknown default: return nil
        }
    }

    /// An `Encodable` JSON response (keys sorted, slashes unescaped: the same bytes as ``json(_:status:)``).
    static func json<Body: Encodable>(_ value: Body, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A JSON response (keys sorted) from `JSONSerialization` values; prefer an `Encodable`.
    @_disfavoredOverload
    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Runs a handler, turning identity and portal refusals into `{code, message, hint}` answers.
    static func run(_ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let error as IdentityError {
            throw gatewayError(error)
        } catch let refusal as PortalStore.Refusal {
            switch refusal.kind {
            case .invalid: throw GatewayError(status: 400, code: "invalid_portal_change", message: refusal.description)
            case .notFound: throw GatewayError(status: 404, code: "portal_not_found", message: refusal.description, hint: "GET /v1/hub/portals lists the portals")
            case .conflict: throw GatewayError(status: 409, code: "portal_exists", message: refusal.description)
            }
        }
    }

    static func gatewayError(_ error: IdentityError) -> GatewayError {
        var headers: [(String, String)] = []
        if let seconds = error.retryAfterSeconds { headers.append(("Retry-After", String(seconds))) }
        if error.status == 401 { headers.append(("WWW-Authenticate", "Bearer realm=\"meltybase-admin\"")) }
        var gatewayError = GatewayError(status: error.status, code: error.code, message: error.message, hint: error.hint, headers: headers)
        gatewayError.extraFields = error.extraFields
        return gatewayError
    }
}
