import Foundation
import MeltyJSON
import Synchronization

/// A MeltyBase plugin written in Swift: one instance per portal that enables it.
///
/// Conform a final class, then export it with one line:
///
/// ```swift
/// @_cdecl("meltybase_plugin_entry")
/// public func meltybasePluginEntry() -> UnsafeRawPointer { PluginExport.descriptor(for: MyPlugin.self) }
/// ```
///
/// The SDK turns the C ABI into async Swift: no pointers in plugin code. Every callback
/// may run concurrently for different requests; keep instance state `Sendable`.
public protocol PortalPlugin: AnyObject, Sendable {
    /// Name, version and route prefix.
    static var description: PluginDescription { get }

    /// Called once per process before any instance, with the `[plugins.<name>.config]`
    /// table. Throw to refuse the plugin (the message is logged by the kernel).
    static func start(host: PluginHostServices, config: PluginConfig) throws

    /// Creates the instance for one portal. Throw to leave the plugin disabled there.
    init(portal: Portal, config: PluginConfig) throws

    /// Answers one HTTP request below `/p/<portal>/<prefix>`.
    func handle(_ request: PluginRequest) async -> PluginResponse

    /// A WebSocket connection opened; throw to close it with code 1008 and the message.
    /// The default refuses every connection.
    func webSocketOpened(_ socket: WebSocketConnection, request: PluginRequest) throws

    /// One message arrived; messages of one connection arrive in order, one at a time.
    func webSocketReceived(_ message: WebSocketMessage, on socket: WebSocketConnection) async

    /// The connection closed (by either side).
    func webSocketClosed(_ socket: WebSocketConnection, code: UInt16) async

    /// Called when the portal disables the plugin, after the last request completed.
    func stop()

    /// Called once at process shutdown after every instance stopped.
    static func shutdown()

    /// The plugin's Studio folder and pages (ABI 1.5); nil (the default) adds none.
    static var studio: StudioDefinition? { get }

    /// The plugin's command-line commands (ABI 1.5); empty by default. They run in a
    /// `meltybase <plugin> <command>` process after ``start(host:config:)``, without portals.
    static var commands: [PluginCommandDefinition] { get }

    /// Reports the plugin's health (ABI 1.5) for the Studio's overview and `meltybase
    /// doctor`; nil (the default) shows "not reported". The kernel waits 2 seconds at most.
    static var healthCheck: (@Sendable () async -> PluginHealthReport)? { get }
}

extension PortalPlugin {
    /// Accepts any configuration.
    public static func start(host: PluginHostServices, config: PluginConfig) throws {}
    /// Refuses WebSocket connections.
    public func webSocketOpened(_ socket: WebSocketConnection, request: PluginRequest) throws {
        throw PluginError.unsupported("this plugin does not accept WebSocket connections")
    }
    /// Ignores messages.
    public func webSocketReceived(_ message: WebSocketMessage, on socket: WebSocketConnection) async {}
    /// Does nothing.
    public func webSocketClosed(_ socket: WebSocketConnection, code: UInt16) async {}
    /// Does nothing.
    public func stop() {}
    /// Does nothing.
    public static func shutdown() {}
    /// No Studio pages.
    public static var studio: StudioDefinition? { nil }
    /// No commands.
    public static var commands: [PluginCommandDefinition] { [] }
    /// Health not reported.
    public static var healthCheck: (@Sendable () async -> PluginHealthReport)? { nil }
}

/// A plugin's identity as the kernel sees it.
public struct PluginDescription: Sendable {
    /// Unique name, `[a-z0-9_-]`, matching the `[plugins.<name>]` table.
    public var name: String
    /// Semantic version.
    public var version: String
    /// Route prefix below `/p/<portal>/`.
    public var routePrefix: String
    /// Further prefixes the plugin serves (e.g. `["auth", "sql"]`); requests say which matched.
    public var extraRoutePrefixes: [String]
    /// Prefixes whose requests stream (ABI 1.7): their bodies arrive through
    /// ``PluginRequest/bodyStream`` (or whole in `body`, when small) and answers may stream (``PluginResponse/streaming(status:headers:_:)``).
    /// The kernel's request timeout does not apply to them: the plugin bounds their time.
    public var streamingRoutePrefixes: [String]

    /// A plugin called `name` at `version`, serving `/p/<portal>/<routePrefix>/...` and the `extraRoutePrefixes`.
    public init(name: String, version: String, routePrefix: String, extraRoutePrefixes: [String] = [], streamingRoutePrefixes: [String] = []) {
        self.name = name
        self.version = version
        self.routePrefix = routePrefix
        self.extraRoutePrefixes = extraRoutePrefixes
        self.streamingRoutePrefixes = streamingRoutePrefixes
    }
}

/// Errors a plugin reports to the kernel; the message reaches logs or clients.
public enum PluginError: Error, CustomStringConvertible {
    /// Bad configuration or argument.
    case invalid(String)
    /// Refused by policy.
    case refused(String)
    /// Not supported.
    case unsupported(String)
    /// Something the plugin depends on is down.
    case unavailable(String)
    /// Not found.
    case notFound(String)

    /// The message.
    public var description: String {
        switch self {
        case .invalid(let text), .refused(let text), .unsupported(let text), .unavailable(let text), .notFound(let text): text
        }
    }
}

/// The portal an instance serves.
public struct Portal: Sendable {
    /// Portal name.
    public let name: String
    private let sharedHandle: HostPointer<OpaquePointer?>
    /// The kernel's handle of the portal.
    var handle: OpaquePointer? { sharedHandle.pointer }

    init(name: String, handle: OpaquePointer?) {
        self.name = name
        sharedHandle = HostPointer(handle)
    }
}

/// An HTTP request, copied out of kernel memory.
public struct PluginRequest: Sendable {
    /// `GET`, `POST`, ...
    public var method: String
    /// Path below the plugin prefix, starting with `/`.
    public var path: String
    /// Raw query string (no `?`).
    public var query: String
    /// Headers in order, names lowercased.
    public var headers: [(name: String, value: String)]
    /// Body bytes.
    public var body: [UInt8]
    /// The portal's name.
    public var portal: String
    /// The kernel's request id.
    public var requestID: String
    /// Client address.
    public var remoteAddress: String
    /// Subject of the client certificate under mTLS, else "".
    public var clientCertificateSubject: String
    /// The route prefix that matched (the plugin's `routePrefix` or one of its extra prefixes).
    public var routePrefix: String = ""
    /// The caller's token as the kernel verified it.
    public var credential: PluginCredential = PluginCredential(json: [])
    /// On a streaming prefix (ABI 1.7) the body, read chunk by chunk; `body` is then empty.
    /// Nil there too when the kernel read a small body whole before dispatching it (ABI 1.9):
    /// it is in `body`. Read with `request.bodyStream?.collect(upTo:) ?? request.body`.
    public var bodyStream: RequestBodyStream?

    /// First value of the header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name.lowercased() == lowered }?.value
    }

    /// Decoded query parameters (first value wins).
    public var queryItems: [String: String] {
        var items: [String: String] = [:]
        for item in URLComponents(string: "?" + query)?.queryItems ?? [] where items[item.name] == nil {
            items[item.name] = item.value ?? ""
        }
        return items
    }

    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// The caller's credential as the kernel verified it (`credential_json` in the C header).
public struct PluginCredential: Sendable {
    /// What kind of token arrived.
    public enum Kind: String, Sendable {
        /// No token.
        case none
        /// A JWT signed with this portal's secret (API key or user token).
        case portal
        /// A kernel admin's access token.
        case admin
        /// A token that does not verify here (expired, another portal's, malformed): see `reason`.
        case invalid
        /// Not from a request: a plugin calling a service for work of its own with no caller
        /// behind it (``PluginCredential/plugin(_:grant:)``); `subject` is `plugin:<name>`,
        /// `reason` the grant that allows it. The kernel does not vouch for it: services
        /// decide what it may do and audit it under that name.
        case plugin
    }

    /// The kind of credential.
    public let kind: Kind
    /// The `role` claim: `anon`, `authenticated`, `service_role` (portal) or `admin`.
    public let role: String?
    /// The `sub` claim.
    public let subject: String?
    /// The assurance level claim (`aal1`, `aal2`), when present.
    public let aal: String?
    /// Why an `invalid` credential was refused (safe to show).
    public let reason: String?
    /// Every claim of the token (parsed from ``claimsJSON`` on each access).
    public var claims: [String: JSONValue] {
        JSONValue.object(json: claimsJSON) ?? [:]
    }

    /// The claims decoded as `type` (a plugin's own `Decodable` claims struct); nil when they do not fit it.
    public func claims<Claims: Decodable>(as type: Claims.Type) -> Claims? {
        try? JSONDecoder().decode(type, from: Data(claimsJSON))
    }
    /// The claims as the JSON text they arrived in (sliced out of the kernel's JSON, not re-encoded).
    public let claimsJSON: [UInt8]
    /// The whole credential JSON as the kernel sent it: what a plugin forwards as `caller`
    /// when it calls a JSON service on behalf of this request.
    public let json: [UInt8]

    /// Recently parsed credentials by their exact JSON: a client sends the same token with
    /// many requests, and parsing JSON was a tenth of a REST request's plugin time.
    private static let recent = Mutex<[[UInt8]: PluginCredential]>([:])

    /// The credential for `json`, parsed once per distinct JSON among the last 1,024.
    public static func parsed(json: [UInt8]) -> PluginCredential {
        if let hit = recent.withLock({ $0[json] }) { return hit }
        let credential = PluginCredential(json: json)
        recent.withLock { recent in
            if recent.count >= 1024 { recent.removeAll(keepingCapacity: true) }
            recent[json] = credential
        }
        return credential
    }

    /// A credential for a service call a plugin makes for its own work, with no request
    /// behind it (an Edge worker reading the secrets its function was deployed with): kind
    /// `plugin`, subject `plugin:<name>`, and `grant` saying on whose decision (audited).
    public static func plugin(_ name: String, grant: String) -> PluginCredential {
        let object: [String: JSONValue] = ["kind": "plugin", "subject": .string("plugin:\(name)"), "reason": .string(grant)]
        return PluginCredential(json: (try? JSONValue.serialize(object)) ?? [])
    }

    /// Parses the kernel's credential JSON (`{kind, role, subject, aal, reason, claims}`);
    /// anything unreadable counts as `none`.
    public init(json: [UInt8]) {
        let object = JSONValue.object(json: json) ?? [:]
        self.json = object.isEmpty ? Array(#"{"kind":"none"}"#.utf8) : json
        kind = Kind(rawValue: object["kind"]?.stringValue ?? "none") ?? .none
        role = object["role"]?.stringValue
        subject = object["subject"]?.stringValue
        aal = object["aal"]?.stringValue
        reason = object["reason"]?.stringValue
        let claims = object["claims"]?.objectValue ?? [:]
        claimsJSON = claims.isEmpty ? Array("{}".utf8) : Self.memberObject("claims", in: json) ?? Array("{}".utf8)
    }

    /// The bytes of the object that is the value of top-level member `name` (string-aware brace matching).
    static func memberObject(_ name: String, in json: [UInt8]) -> [UInt8]? {
        let key = Array("\"\(name)\":".utf8)
        guard json.count > key.count else { return nil }
        var index = 0
        var depth = 0
        var inString = false
        while index < json.count {
            let byte = json[index]
            if inString {
                if byte == UInt8(ascii: "\\") {
                    index += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") { inString = false }
                index += 1
                continue
            }
            if byte == UInt8(ascii: "{") { depth += 1 }
            if byte == UInt8(ascii: "}") { depth -= 1 }
            if byte == UInt8(ascii: "\"") {
                if depth == 1, index + key.count <= json.count, Array(json[index..<index + key.count]) == key {
                    var start = index + key.count
                    while start < json.count, json[start] == UInt8(ascii: " ") { start += 1 }
                    guard start < json.count, json[start] == UInt8(ascii: "{") else { return nil }
                    var end = start
                    var level = 0
                    var quoted = false
                    while end < json.count {
                        let character = json[end]
                        if quoted {
                            if character == UInt8(ascii: "\\") {
                                end += 2
                                continue
                            }
                            if character == UInt8(ascii: "\"") { quoted = false }
                        } else if character == UInt8(ascii: "\"") {
                            quoted = true
                        } else if character == UInt8(ascii: "{") {
                            level += 1
                        } else if character == UInt8(ascii: "}") {
                            level -= 1
                            if level == 0 { return Array(json[start...end]) }
                        }
                        end += 1
                    }
                    return nil
                }
                inString = true
            }
            index += 1
        }
        return nil
    }

    /// A portal credential with `role` (e.g. `service_role`).
    public func isPortal(role wanted: String) -> Bool { kind == .portal && role == wanted }
    /// A kernel admin at `aal2`.
    public var isAdminAtAAL2: Bool { kind == .admin && aal == "aal2" }
}

/// An HTTP response.
public struct PluginResponse: Sendable {
    /// Status code.
    public var status: Int
    /// Headers in order.
    public var headers: [(name: String, value: String)]
    /// Body bytes.
    public var body: [UInt8]
    /// Writes the body in chunks instead of `body` (ABI 1.7, streaming prefixes only).
    public var streamedBody: (@Sendable (ResponseBodyWriter) async throws -> Void)?

    /// A response with raw bytes.
    public init(status: Int = 200, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response whose body `produce` writes chunk by chunk, each sent to the client as it
    /// comes (on a streaming prefix; elsewhere, or on a host older than ABI 1.7, the chunks
    /// are gathered and sent whole). A thrown error ends the body early: the client sees a
    /// truncated response.
    public static func streaming(
        status: Int = 200, headers: [(name: String, value: String)] = [], _ produce: @escaping @Sendable (ResponseBodyWriter) async throws -> Void
    ) -> PluginResponse {
        var response = PluginResponse(status: status, headers: headers)
        response.streamedBody = produce
        return response
    }

    /// A `text/plain` response.
    public static func text(_ text: String, status: Int = 200) -> PluginResponse {
        PluginResponse(status: status, headers: [("content-type", "text/plain; charset=utf-8")], body: Array(text.utf8))
    }

    /// An `application/json` response from an `Encodable` value (keys sorted; a value that
    /// cannot be encoded, such as NaN, answers `null`).
    public static func json<Body: Encodable>(_ value: Body, status: Int = 200) -> PluginResponse {
        let body = (try? JSONValue.serialize(value)) ?? Array("null".utf8)
        return PluginResponse(status: status, headers: [("content-type", "application/json")], body: body)
    }

    /// An `application/json` response from a `JSONSerialization` value (`[String: Any]`, ...).
    /// Prefer ``json(_:status:)-(Encodable,_)`` with a `Codable` type or `JSONValue`.
    @_disfavoredOverload
    public static func json(_ value: Any, status: Int = 200) -> PluginResponse {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])) ?? Data("null".utf8)
        return PluginResponse(status: status, headers: [("content-type", "application/json")], body: Array(data))
    }

    /// The kernel's error shape `{code, hint, message}` (`hint` is `null` when absent).
    public struct ErrorBody: Codable, Sendable, Equatable {
        /// Machine-readable code.
        public var code: String
        /// What went wrong.
        public var message: String
        /// What to do about it.
        public var hint: String?

        /// An error body.
        public init(code: String, message: String, hint: String? = nil) {
            self.code = code
            self.message = message
            self.hint = hint
        }

        /// Writes `hint` as `null` when absent, as the kernel's errors do.
        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(code, forKey: .code)
            try container.encode(message, forKey: .message)
            try container.encode(hint, forKey: .hint)
        }
    }

    /// The kernel's error shape `{code, message, hint}`.
    public static func error(status: Int, code: String, message: String, hint: String? = nil) -> PluginResponse {
        json(ErrorBody(code: code, message: message, hint: hint), status: status)
    }
}

/// A WebSocket message.
public enum WebSocketMessage: Sendable, Equatable {
    /// A text frame.
    case text(String)
    /// A binary frame.
    case binary([UInt8])
}
