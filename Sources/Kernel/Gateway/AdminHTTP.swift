import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Request parsing, JSON responses and error mapping shared by the admin-facing routes
/// (``AdminAPIRoutes``, the wizard's license checks, the plugin report and page list).
enum AdminHTTP {
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
        return Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A JSON response (keys sorted) from `JSONSerialization` values; prefer an `Encodable`.
    @_disfavoredOverload
    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
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
