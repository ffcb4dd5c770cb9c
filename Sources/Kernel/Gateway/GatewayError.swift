import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A JSON error `{code, message, hint}` the gateway answers with.
public struct GatewayError: Error, Sendable, HTTPResponseError {
    /// HTTP status code.
    public var statusCode: Int
    /// Stable machine-readable code (`portal_not_found`).
    public var code: String
    /// What happened, for a human.
    public var message: String
    /// What to do about it.
    public var hint: String?
    /// Extra headers (e.g. `Retry-After`).
    public var extraHeaders: [(String, String)] = []
    /// Extra JSON members beside code, message and hint (e.g. `field`, `violations`).
    public var extraFields: [String: any Sendable] = [:]

    /// An error with its status, code, message and hint.
    public init(status: Int, code: String, message: String, hint: String? = nil, headers: [(String, String)] = []) {
        self.statusCode = status
        self.code = code
        self.message = message
        self.hint = hint
        self.extraHeaders = headers
    }

    /// `{"code": ..., "message": ..., "hint": ...}` as UTF-8.
    public var jsonBytes: [UInt8] {
        var object: [String: Any] = extraFields
        object["code"] = code
        object["message"] = message
        object["hint"] = hint ?? NSNull()
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return Array(data)
    }

    /// The HTTP status.
    public var status: HTTPResponse.Status { .init(code: statusCode) }

    /// Renders the error as a JSON response.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        for (name, value) in extraHeaders {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jsonBytes)))
    }
}
