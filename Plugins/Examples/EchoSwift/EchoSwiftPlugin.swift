import Foundation
import MeltyPluginSDK

/// The Swift example plugin: HTTP echo, WebSocket echo, a JSON service (`echo.v1`) and
/// outbound HTTP through the host. It is the reference for Swift plugin authors.
public final class EchoSwiftPlugin: PortalPlugin {
    public static let description = PluginDescription(name: "echo-swift", version: "1.1.0", routePrefix: "echo-swift", extraRoutePrefixes: ["echo-swift-alt"])

    nonisolated(unsafe) static var host: PluginHostServices?
    let portal: Portal
    let greeting: String

    public static func start(host: PluginHostServices, config: [String: Any]) throws {
        if let greeting = config["greeting"], !(greeting is String) {
            throw PluginError.invalid("echo-swift: config key 'greeting' must be a string")
        }
        self.host = host
        try PluginExport.exportJSONService("echo", major: 1) { instance, method, argument in
            guard let plugin = instance as? EchoSwiftPlugin else { throw PluginError.invalid("wrong instance") }
            return try plugin.serve(method: method, argument: argument)
        }
    }

    public init(portal: Portal, config: [String: Any]) throws {
        self.portal = portal
        self.greeting = config["greeting"] as? String ?? "echo"
    }

    /// `echo.v1`: `reverse {"text": s}` → `{"text": reversed, "portal": name}`.
    func serve(method: String, argument: [UInt8]) throws -> [UInt8] {
        guard method == "reverse" else { throw PluginError.notFound("echo.v1 has no method \(method)") }
        let object = (try? JSONSerialization.jsonObject(with: Data(argument))) as? [String: Any]
        let text = object?["text"] as? String ?? ""
        return Array(try JSONSerialization.data(withJSONObject: ["text": String(text.reversed()), "portal": portal.name], options: [.sortedKeys]))
    }

    public func handle(_ request: PluginRequest) async -> PluginResponse {
        switch (request.method, request.path) {
        case ("GET", "/echo"), ("POST", "/echo"):
            return request.body.isEmpty ? .text(greeting) : PluginResponse(status: 200, headers: [("content-type", request.header("content-type") ?? "application/octet-stream")], body: request.body)
        case ("GET", "/call"), ("POST", "/call"):
            // POST sends its body as the JSON argument; GET sends {"text": ?text}.
            let items = request.queryItems
            do {
                let argument = request.body.isEmpty ? Array(try JSONSerialization.data(withJSONObject: ["text": items["text"] ?? ""])) : request.body
                let result = try await Self.host!.callService(items["service"] ?? "echo", major: UInt32(items["major"] ?? "1") ?? 1,
                                                              method: items["method"] ?? "reverse", json: argument, portal: portal)
                return PluginResponse(status: 200, headers: [("content-type", "application/json")], body: result)
            } catch let error as PluginError {
                if case .refused = error { return .error(status: 403, code: "service_refused", message: error.description) }
                return .error(status: 404, code: "service_unavailable", message: error.description)
            } catch {
                return .error(status: 500, code: "internal_error", message: "\(error)")
            }
        case ("GET", "/credential"):
            // What the kernel verified about the caller's token, and which prefix matched.
            let credential = request.credential
            return .json([
                "kind": credential.kind.rawValue, "role": credential.role ?? NSNull(), "subject": credential.subject ?? NSNull(),
                "aal": credential.aal ?? NSNull(), "reason": credential.reason ?? NSNull(), "prefix": request.routePrefix,
                "has_conninfo": !Self.host!.postgresConninfo(portal: portal).isEmpty,
            ] as [String: Any])
        case ("POST", "/sign"):
            // Signs the body's claims with the portal's secret through the host.
            guard let claims = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] else {
                return .error(status: 400, code: "invalid_claims", message: "send a JSON object of claims")
            }
            do {
                return .json(["token": try await Self.host!.signPortalJWT(claims: claims, portal: portal)])
            } catch {
                return .error(status: 503, code: "sign_failed", message: "\(error)")
            }
        case ("POST", "/seal"):
            // Seals the body for storage, bound to ?context= (ABI 1.2 secret_seal).
            do {
                return .json(["sealed": try Self.host!.sealSecret(request.body, portal: portal, context: request.queryItems["context"] ?? "")])
            } catch {
                return .error(status: 400, code: "seal_failed", message: "\(error)")
            }
        case ("POST", "/open"):
            // Opens a sealed body for the same ?context= (ABI 1.2 secret_open).
            do {
                let plaintext = try Self.host!.openSecret(String(decoding: request.body, as: UTF8.self), portal: portal, context: request.queryItems["context"] ?? "")
                return .json(["plaintext": String(decoding: plaintext, as: UTF8.self)])
            } catch PluginError.refused(let message) {
                return .error(status: 422, code: "open_refused", message: message)
            } catch {
                return .error(status: 400, code: "open_failed", message: "\(error)")
            }
        case ("GET", "/fetch"):
            guard let url = request.queryItems["url"] else { return .error(status: 400, code: "missing_url", message: "pass ?url=") }
            do {
                let result = try await Self.host!.fetch(url, portal: portal)
                return .json(["status": result.status, "body": String(decoding: result.body, as: UTF8.self)])
            } catch {
                return .error(status: 502, code: "fetch_failed", message: "\(error)")
            }
        default:
            return .error(status: 404, code: "not_found", message: "echo-swift has no route \(request.method) \(request.path)", hint: "try GET /echo")
        }
    }

    public func webSocketOpened(_ socket: WebSocketConnection, request: PluginRequest) throws {
        if request.queryItems["refuse"] != nil { throw PluginError.refused("refused as asked") }
    }

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
