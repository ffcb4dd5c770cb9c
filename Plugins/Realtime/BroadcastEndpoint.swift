import Foundation
import MeltyJSON
import MeltyPluginSDK
import RealtimeCore

/// Broadcast over HTTP, as Supabase Realtime serves it:
/// - `POST /v1/api/broadcast` with `{"messages":[{"topic","event","payload","private"}]}`;
/// - `POST /v1/api/broadcast/<topic>/events/<event>` with the payload as the body (JSON, or
///   bytes with `application/octet-stream`), `?private=true` for a private channel.
///
/// Answers 202. Public channels take any key of the portal; private ones need the caller's
/// `realtime.messages` INSERT policy (the service role may send anywhere).
struct BroadcastEndpoint {
    let plugin: RealtimePlugin

    /// Most messages one request may carry.
    static let maxMessages = 1_000

    func handle(_ request: PluginRequest) async -> PluginResponse {
        let path = request.path
        if path == "/v1/api/stats" { return stats(request) }
        guard path == "/v1/api/broadcast" || path.hasPrefix("/v1/api/broadcast/") else {
            return .error(
                status: 404, code: "not_found", message: "no realtime route \(request.method) \(path.prefix(200))",
                hint: "WebSocket: /realtime/v1/websocket; HTTP broadcast: POST /realtime/v1/api/broadcast")
        }
        guard request.method == "POST" else {
            return .error(status: 405, code: "method_not_allowed", message: "broadcast takes POST")
        }
        guard let caller = RealtimePlugin.caller(request.credential) else {
            let reason = request.credential.reason ?? "send a key of portal \(plugin.portal.name) as apikey or Authorization: Bearer"
            return .error(status: 401, code: "unauthorized", message: reason)
        }
        var messages: [(topic: String, body: BroadcastBody, isPrivate: Bool)] = []
        if path == "/v1/api/broadcast" {
            guard let root = JSONValue.object(json: request.body), let list = root["messages"]?.arrayValue else {
                return .error(status: 400, code: "invalid_body", message: "the body must be {\"messages\":[{\"topic\",\"event\",\"payload\",\"private\"}]}")
            }
            guard list.count <= Self.maxMessages else {
                return .error(status: 400, code: "too_many_messages", message: "at most \(Self.maxMessages) messages per request, found \(list.count)")
            }
            // The raw payloads, byte for byte, from the body's own text.
            let rawMessages = (try? JSONSlices.members(of: request.body))?.first { $0.key == "messages" }.flatMap { try? JSONSlices.elements(of: Array($0.value)) } ?? []
            for (index, entry) in list.enumerated() {
                guard let object = entry.objectValue, let topic = object["topic"]?.stringValue, let event = object["event"]?.stringValue,
                    Self.acceptable(topic), Self.acceptable(event)
                else {
                    return .error(status: 400, code: "invalid_message", message: "messages[\(index)] needs a topic and an event (1 to 255 bytes, no NUL)")
                }
                let members = index < rawMessages.count ? ((try? JSONSlices.members(of: Array(rawMessages[index]))) ?? []) : []
                let payload = members.first { $0.key == "payload" }.map { Array($0.value) } ?? Array("{}".utf8)
                let name = topic.hasPrefix("realtime:") ? String(topic.dropFirst("realtime:".count)) : topic
                messages.append((name, BroadcastBody(event: event, payload: payload, isJSON: true), object["private"]?.boolValue ?? false))
            }
        } else {
            let parts = path.dropFirst("/v1/api/broadcast/".count).split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[1] == "events",
                let topic = String(parts[0]).removingPercentEncoding, let event = String(parts[2]).removingPercentEncoding,
                Self.acceptable(topic), Self.acceptable(event)
            else {
                return .error(status: 404, code: "not_found", message: "use POST /realtime/v1/api/broadcast/<topic>/events/<event>")
            }
            let binary = request.header("content-type")?.lowercased().hasPrefix("application/octet-stream") ?? false
            if !binary && !JSONSlices.isValid(request.body) {
                return .error(status: 400, code: "invalid_body", message: "the body must be JSON (or send Content-Type: application/octet-stream)")
            }
            let name = topic.hasPrefix("realtime:") ? String(topic.dropFirst("realtime:".count)) : topic
            messages.append((name, BroadcastBody(event: event, payload: request.body, isJSON: !binary), request.queryItems["private"] == "true"))
        }
        for message in messages where message.isPrivate && caller.role != "service_role" {
            do {
                let access = try await plugin.policies.access(topic: message.topic, caller: caller)
                guard access.write else {
                    return .error(
                        status: 403, code: "forbidden", message: "no policy on realtime.messages lets role \(caller.role) insert into channel \(message.topic)")
                }
            } catch {
                return .error(status: 503, code: "policy_check_failed", message: "cannot check the channel's policies: \(error)")
            }
        }
        for message in messages {
            plugin.deliver(topic: "realtime:" + message.topic, body: message.body, from: nil, isPrivate: message.isPrivate)
        }
        return PluginResponse(status: 202, headers: [("content-type", "application/json")], body: Array("{}".utf8))
    }

    /// `GET /v1/api/stats`: this kernel's counts for the portal (service role or an admin at AAL2).
    private func stats(_ request: PluginRequest) -> PluginResponse {
        guard request.method == "GET" else { return .error(status: 405, code: "method_not_allowed", message: "stats take GET") }
        if let refusal = request.credential.refusalUnlessServiceRoleOrAAL2Admin("realtime stats") { return refusal }
        struct Stats: Encodable {
            var node: String
            var connections: Int
            var channels: Int
            var subscriptions: Int
            var changeFeed: String
            var kernels: [String]

            enum CodingKeys: String, CodingKey {
                case node, connections, channels, subscriptions, kernels
                case changeFeed = "change_feed"
            }
        }
        let counts = plugin.hub.counts
        let phase: String
        switch plugin.feed.phase {
        case .streaming: phase = "streaming"
        case .leading: phase = "starting (creating or opening the slot)"
        case .following: phase = "standby (another kernel streams)"
        case .stopped: phase = "stopped"
        case .backingOff(let error): phase = "retrying: \(error)"
        }
        return .json(
            Stats(
                node: plugin.runtime.node, connections: counts.connections, channels: counts.channels, subscriptions: counts.subscriptions,
                changeFeed: phase, kernels: plugin.runtime.mesh?.kernels ?? []))
    }

    private static func acceptable(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && !name.utf8.contains(0)
    }
}
