import Foundation
import MeltyJSON
import MeltyPluginSDK

/// The Swift example plugin: HTTP echo, WebSocket echo, a JSON service (`echo.v1`),
/// outbound HTTP and token verification through the host. It is the reference for Swift plugin authors, and it is
/// harmless when enabled beside real plugins: it relays service calls with the caller's own
/// credential (`vault.v1` answers an anonymous caller with a refusal), signs user tokens only
/// for a `service_role` caller, and fetches only what the kernel's egress policy allows.
public final class EchoSwiftPlugin: PortalPlugin {
    /// Name, version and route prefixes.
    public static let description = PluginDescription(name: "echo-swift", version: "1.1.0", routePrefix: "echo-swift", extraRoutePrefixes: ["echo-swift-alt"])

    /// Health (ABI 1.5): always fine; shows how a Swift plugin reports it.
    public static var healthCheck: (@Sendable () async -> PluginHealthReport)? {
        { PluginHealthReport(.ok, "echoing") }
    }

    /// One command (ABI 1.5): `meltybase echo-swift echo [words...] [--upper]`.
    public static var commands: [PluginCommandDefinition] {
        [
            PluginCommandDefinition(
                name: "echo", summary: "Print the arguments back.",
                help: "USAGE: meltybase echo-swift echo [words...] [--upper]", options: [.flag("upper")]
            ) { arguments, context in
                let text = arguments.positional.joined(separator: " ")
                context.output.print(arguments.flag("upper") ? text.uppercased() : text)
                return 0
            }
        ]
    }

    /// The kernel's services (set by the SDK before `start`).
    static var host: PluginHostServices? { PluginExport.host }
    let portal: Portal
    let greeting: String

    /// Global start: keeps the host and checks the configuration.
    public static func start(host: PluginHostServices, config: PluginConfig) throws {
        _ = try config.string("greeting", plugin: "echo-swift")
        try PluginExport.exportJSONService("echo", major: 1) { instance, method, argument in
            guard let plugin = instance as? EchoSwiftPlugin else { throw PluginError.invalid("wrong instance") }
            return try plugin.serve(method: method, argument: argument)
        }
    }

    /// The instance for `portal`.
    public init(portal: Portal, config: PluginConfig) throws {
        self.portal = portal
        self.greeting = config["greeting"]?.stringValue ?? "echo"
    }

    /// `echo.v1 reverse`'s argument: `{"text": s}` (anything else reverses "").
    struct ReverseArgument: Decodable {
        var text: String?
    }

    /// `echo.v1 reverse`'s result.
    struct ReverseResult: Encodable {
        var text: String
        var portal: String
    }

    /// `echo.v1`: `reverse {"text": s}` → `{"text": reversed, "portal": name}`.
    func serve(method: String, argument: [UInt8]) throws -> [UInt8] {
        guard method == "reverse" else { throw PluginError.notFound("echo.v1 has no method \(method)") }
        let text = (try? JSONDecoder().decode(ReverseArgument.self, from: Data(argument)))?.text ?? ""
        return try JSONValue.serialize(ReverseResult(text: String(text.reversed()), portal: portal.name))
    }

    /// `GET /credential`: what the kernel verified about the caller (absent values are `null`).
    struct CredentialAnswer: Encodable {
        var kind: String
        @NullWhenAbsent var role: String?
        @NullWhenAbsent var subject: String?
        @NullWhenAbsent var aal: String?
        @NullWhenAbsent var reason: String?
        var prefix: String
        var hasConninfo: Bool

        enum CodingKeys: String, CodingKey {
            case kind, role, subject, aal, reason, prefix
            case hasConninfo = "has_conninfo"
        }
    }

    /// `GET /fetch`'s answer.
    struct FetchAnswer: Encodable {
        var status: Int
        var body: String
    }

    /// Answers one request on the plugin\'s prefixes.
    public func handle(_ request: PluginRequest) async -> PluginResponse {
        switch (request.method, request.path) {
        case ("GET", "/echo"), ("POST", "/echo"):
            return request.body.isEmpty
                ? .text(greeting) : PluginResponse(status: 200, headers: [("content-type", request.header("content-type") ?? "application/octet-stream")], body: request.body)
        case ("GET", "/call"), ("POST", "/call"):
            // POST sends its body (a JSON object) as the arguments; GET sends {"text": ?text}. The
            // call carries this request's credential as `caller`: the service decides for it.
            let items = request.queryItems
            guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
            let arguments: [String: JSONValue]
            if request.body.isEmpty {
                arguments = ["text": JSONValue(items["text"] ?? "")]
            } else if let object = JSONValue.object(json: request.body) {
                arguments = object
            } else {
                return .error(status: 400, code: "invalid_arguments", message: "send a JSON object as the body")
            }
            guard let major = UInt32(items["major"] ?? "1") else { return .error(status: 400, code: "invalid_major", message: "major must be a small positive integer") }
            do {
                let result = try await host.callService(
                    items["service"] ?? "echo", major: major, method: items["method"] ?? "reverse",
                    arguments: arguments, caller: request.credential, portal: portal)
                return PluginResponse(status: 200, headers: [("content-type", "application/json")], body: result)
            } catch let error as PluginError {
                switch error {
                case .refused: return .error(status: 403, code: "service_refused", message: error.description)
                case .invalid: return .error(status: 400, code: "service_invalid", message: error.description)
                default: return .error(status: 404, code: "service_unavailable", message: error.description)
                }
            } catch {
                return .error(status: 500, code: "internal_error", message: "\(error)")
            }
        case ("POST", "/audit"):
            // Records an audit entry (the body's JSON object as details) and answers once it is
            // committed; `audit` suspends, it never blocks the request's thread.
            guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
            let details = JSONValue.object(json: request.body) ?? [:]
            do {
                try await host.audit(action: "echo.audit", target: portal.name, details: details, portal: portal)
                return .json(["audited": true])
            } catch {
                return .error(status: 503, code: "audit_unavailable", message: "\(error)")
            }
        case ("GET", "/credential"):
            // What the kernel verified about the caller's token, and which prefix matched.
            let credential = request.credential
            guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
            return .json(
                CredentialAnswer(
                    kind: credential.kind.rawValue, role: credential.role, subject: credential.subject, aal: credential.aal,
                    reason: credential.reason, prefix: request.routePrefix, hasConninfo: !((try? host.postgresConninfo(portal: portal)) ?? "").isEmpty))
        case ("POST", "/sign"):
            // Signs a user token for {"sub": id} with the portal's secret through the host, for a
            // caller that holds the service_role key (which may act as any user anyway). The
            // kernel itself signs nothing but `authenticated` tokens for plugins.
            guard request.credential.kind == .portal, request.credential.role == "service_role" else {
                return .error(
                    status: 403, code: "service_role_required", message: "only the portal's service_role key may ask for a user token",
                    hint: "send Authorization: Bearer <service_role key>")
            }
            guard var claims = JSONValue.object(json: request.body) else {
                return .error(status: 400, code: "invalid_claims", message: "send a JSON object of claims")
            }
            guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
            let now = Int(Date().timeIntervalSince1970)
            claims["iat"] = claims["iat"] ?? JSONValue(now)
            claims["exp"] = claims["exp"] ?? JSONValue(now + 3600)
            do {
                return .json(["token": try await host.signPortalJWT(claims: claims, portal: portal)])
            } catch PluginError.refused(let message) {
                return .error(status: 403, code: "sign_refused", message: message)
            } catch {
                return .error(status: 503, code: "sign_failed", message: "\(error)")
            }
        case ("POST", "/seal"):
            // Seals the body for storage, bound to ?context= (ABI 1.2 secret_seal).
            do {
                guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
                return .json(["sealed": try host.sealSecret(request.body, portal: portal, context: request.queryItems["context"] ?? "")])
            } catch {
                return .error(status: 400, code: "seal_failed", message: "\(error)")
            }
        case ("POST", "/open"):
            // Opens a sealed body for the same ?context= (ABI 1.2 secret_open).
            do {
                guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
                let plaintext = try host.openSecret(String(decoding: request.body, as: UTF8.self), portal: portal, context: request.queryItems["context"] ?? "")
                return .json(["plaintext": String(decoding: plaintext, as: UTF8.self)])
            } catch PluginError.refused(let message) {
                return .error(status: 422, code: "open_refused", message: message)
            } catch {
                return .error(status: 400, code: "open_failed", message: "\(error)")
            }
        case ("POST", "/verify"):
            // Verifies the body as a token of this portal through the host (ABI 1.6
            // portal_token_verify), as a Realtime plugin does with a join's access_token, and
            // answers the kernel's credential JSON.
            guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
            do {
                let credential = try await host.verifyPortalToken(String(decoding: request.body, as: UTF8.self), portal: portal)
                return PluginResponse(status: 200, headers: [("content-type", "application/json")], body: credential.json)
            } catch PluginError.unsupported(let message) {
                return .error(status: 501, code: "verify_unsupported", message: message)
            } catch {
                return .error(status: 503, code: "verify_failed", message: "\(error)")
            }
        case ("GET", "/redis"):
            // Whether the kernel has a Redis for plugins (ABI 1.6 redis_url); never the URL,
            // which may hold a password.
            guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
            return .json(["redis": host.redisURL != nil])
        case ("GET", "/fetch"):
            guard let url = request.queryItems["url"] else { return .error(status: 400, code: "missing_url", message: "pass ?url=") }
            do {
                guard let host = Self.host else { return .error(status: 503, code: "not_started", message: "echo-swift is not started") }
                let result = try await host.fetch(url, portal: portal)
                return .json(FetchAnswer(status: result.status, body: String(decoding: result.body, as: UTF8.self)))
            } catch PluginError.refused(let message) {
                return .error(status: 403, code: "egress_refused", message: message)
            } catch {
                return .error(status: 502, code: "fetch_failed", message: "\(error)")
            }
        default:
            return .error(status: 404, code: "not_found", message: "echo-swift has no route \(request.method) \(request.path)", hint: "try GET /echo")
        }
    }

    /// Accepts a WebSocket on the plugin\'s prefix.
    public func webSocketOpened(_ socket: WebSocketConnection, request: PluginRequest) throws {
        if request.queryItems["refuse"] != nil { throw PluginError.refused("refused as asked") }
    }

    /// Echoes one frame back.
    public func webSocketReceived(_ message: WebSocketMessage, on socket: WebSocketConnection) async {
        switch message {
        case .text(let text): socket.send(text)
        case .binary(let bytes): socket.send(binary: bytes)
        }
    }
}

/// The plugin's one exported symbol.
@_cdecl("meltybase_plugin_entry")
public func meltybasePluginEntry() -> UnsafeRawPointer {
    PluginExport.descriptor(for: EchoSwiftPlugin.self)
}
