import Foundation
import MeltyJSON
import MeltyPluginSDK
import RealtimeCore

/// Handles one client message: heartbeats, joins and leaves, broadcasts, presence and token
/// refreshes. Errors never close the socket; they are answered as Phoenix does, with a
/// `phx_reply` of status `error` and `{"reason": ...}` (or a `system` message when there is no
/// ref to answer).
struct MessageHandler {
    let plugin: RealtimePlugin
    var hub: ChannelHub { plugin.hub }

    func handle(_ message: WebSocketMessage, from connection: UInt64) async {
        guard let (version, socketCaller, socketToken, topics) = hub.connection(connection) else { return }
        let inbound: PhoenixInbound
        do {
            switch message {
            case .text(let text): inbound = try PhoenixFrame.decode(text: Array(text.utf8), version: version)
            case .binary(let bytes):
                guard version == .v2 else { throw ProtocolError("binary messages need vsn=2.0.0") }
                inbound = try PhoenixFrame.decode(binary: bytes)
            }
        } catch {
            hub.reply(
                connection, topic: "phoenix", event: "phx_reply", payload: Self.errorReply("malformed message: \(error)"), ref: nil, joinRef: nil)
            return
        }
        if inbound.topic == "phoenix" && inbound.event == "heartbeat" {
            hub.reply(connection, topic: "phoenix", event: "phx_reply", payload: Array(#"{"status":"ok","response":{}}"#.utf8), ref: inbound.ref, joinRef: nil)
            return
        }
        guard plugin.messages.take() else {
            answerError(inbound, connection, "rate limit: portal \(plugin.portal.name) takes at most \(plugin.runtime.settings.maxMessagesPerSecond) messages per second")
            return
        }
        switch inbound.event {
        case "phx_join":
            await join(inbound, connection, socketCaller: socketCaller, socketToken: socketToken, topics: topics)
        case "phx_leave":
            plugin.presenceChanged(topic: inbound.topic, joins: [], leaves: hub.leave(connection, topic: inbound.topic))
            hub.reply(connection, topic: inbound.topic, event: "phx_reply", payload: Self.okReply, ref: inbound.ref, joinRef: inbound.joinRef)
            hub.reply(connection, topic: inbound.topic, event: "phx_close", payload: Array("{}".utf8), ref: inbound.ref, joinRef: inbound.joinRef)
        case "broadcast":
            await broadcast(inbound, connection)
        case "presence":
            presence(inbound, connection)
        case "access_token":
            await refreshToken(inbound, connection)
        default:
            answerError(inbound, connection, "unknown event \"\(inbound.event)\" (expected phx_join, phx_leave, broadcast, presence, access_token or heartbeat)")
        }
    }

    // MARK: join

    private func join(_ inbound: PhoenixInbound, _ connection: UInt64, socketCaller: Caller?, socketToken: String?, topics: Set<String>) async {
        guard inbound.topic.hasPrefix("realtime:"), inbound.topic.count > "realtime:".count else {
            answerError(inbound, connection, "topic must be realtime:<channel name>")
            return
        }
        guard topics.contains(inbound.topic) || topics.count < plugin.runtime.settings.maxChannelsPerConnection else {
            answerError(inbound, connection, "a connection may join at most \(plugin.runtime.settings.maxChannelsPerConnection) channels")
            return
        }
        guard plugin.joins.take() else {
            answerError(inbound, connection, "rate limit: portal \(plugin.portal.name) takes at most \(plugin.runtime.settings.maxJoinsPerSecond) joins per second")
            return
        }
        let request: JoinRequest
        do {
            request = try JoinRequest(payload: inbound.payload)
        } catch {
            answerError(inbound, connection, "\(error)")
            return
        }
        var caller = socketCaller
        if let token = request.accessToken, token != socketToken {
            switch await plugin.verify(token: token) {
            case .success(let verified): caller = verified
            case .failure(let reason):
                answerError(inbound, connection, "unauthorized: \(reason)")
                return
            }
        }
        guard let caller else {
            answerError(inbound, connection, "unauthorized: no token")
            return
        }
        if let expiry = caller.expiresAt, expiry <= Date().timeIntervalSince1970 {
            answerError(inbound, connection, "unauthorized: the token has expired")
            return
        }
        let name = String(inbound.topic.dropFirst("realtime:".count))
        var canWrite = true
        if request.isPrivate {
            do {
                let access = try await plugin.policies.access(topic: name, caller: caller)
                guard access.read || caller.role == "service_role" else {
                    answerError(
                        inbound, connection,
                        "unauthorized: you do not have permissions to read from this channel topic: \(name) (no policy on realtime.messages lets role \(caller.role) select it)")
                    return
                }
                canWrite = access.write || caller.role == "service_role"
            } catch {
                answerError(inbound, connection, "cannot check the channel's policies: \(error)")
                return
            }
        }
        for (index, binding) in request.changes.enumerated() {
            if let problem = plugin.changeBindingProblem(binding) {
                answerError(inbound, connection, "postgres_changes[\(index)]: \(problem)")
                return
            }
        }
        if !request.changes.isEmpty {
            do {
                try await plugin.changesReady()
            } catch {
                answerError(inbound, connection, "postgres_changes are unavailable: \(error)")
                return
            }
        }
        let joined = hub.join(connection, topic: inbound.topic, joinRef: inbound.joinRef, request: request, caller: caller, canWrite: canWrite)
        plugin.runtime.host.count("channel_joins", portal: plugin.portal)
        plugin.presenceChanged(topic: inbound.topic, joins: [], leaves: joined.replacedPresence)
        var response = Array(#"{"postgres_changes":["#.utf8)
        for (index, binding) in request.changes.enumerated() {
            if index > 0 { response.append(UInt8(ascii: ",")) }
            response += Array(#"{"id":\#(joined.changeIDs[index]),"event":"#.utf8)
            JSONStringWriter.append(binding.event.utf8, to: &response)
            for (key, value) in [("schema", binding.schema), ("table", binding.table), ("filter", binding.filter)] {
                guard let value else { continue }
                response += Array(",\"\(key)\":".utf8)
                JSONStringWriter.append(value.utf8, to: &response)
            }
            response.append(UInt8(ascii: "}"))
        }
        response += Array("]}".utf8)
        hub.reply(
            connection, topic: inbound.topic, event: "phx_reply", payload: Array(#"{"status":"ok","response":"#.utf8) + response + [UInt8(ascii: "}")],
            ref: inbound.ref, joinRef: inbound.joinRef)
        if !request.changes.isEmpty {
            hub.reply(
                connection, topic: inbound.topic, event: "system",
                payload: Self.system(topic: name, extension: "postgres_changes", status: "ok", message: "Subscribed to PostgreSQL"), ref: nil,
                joinRef: inbound.joinRef)
        }
        if request.presenceEnabled {
            hub.reply(connection, topic: inbound.topic, event: "presence_state", payload: joined.presenceState, ref: nil, joinRef: inbound.joinRef)
        }
        if request.isPrivate, let since = request.replaySince {
            do {
                for (id, body) in try await plugin.policies.replay(topic: name, since: since, limit: request.replayLimit, caller: caller) {
                    var meta = Array(#"{"replayed":true,"id":"#.utf8)
                    JSONStringWriter.append(id.utf8, to: &meta)
                    meta.append(UInt8(ascii: "}"))
                    if let payload = PhoenixFrame.broadcastPayload(body, meta: meta) {
                        hub.reply(connection, topic: inbound.topic, event: "broadcast", payload: payload, ref: nil, joinRef: nil)
                    }
                }
            } catch {
                hub.reply(
                    connection, topic: inbound.topic, event: "system",
                    payload: Self.system(topic: name, extension: "broadcast", status: "error", message: "replay failed: \(error)"), ref: nil,
                    joinRef: inbound.joinRef)
            }
        }
    }

    // MARK: broadcast

    private func broadcast(_ inbound: PhoenixInbound, _ connection: UInt64) async {
        guard let member = hub.membership(connection, topic: inbound.topic) else {
            answerError(inbound, connection, "join \(inbound.topic) before sending to it")
            return
        }
        let body: BroadcastBody
        if let binary = inbound.binaryBroadcast {
            body = binary
        } else {
            let members = (try? JSONSlices.members(of: inbound.payload)) ?? []
            guard let event = members.first(where: { $0.key == "event" }).flatMap({ JSONSlices.string($0.value) }), event.utf8.count <= 255 else {
                answerError(inbound, connection, "a broadcast payload needs {\"type\":\"broadcast\",\"event\":<name>,\"payload\":{...}}")
                return
            }
            let payload = members.first(where: { $0.key == "payload" }).map { Array($0.value) } ?? Array("{}".utf8)
            body = BroadcastBody(event: event, payload: payload, isJSON: true)
        }
        guard member.canWrite else {
            answerError(inbound, connection, "unauthorized: no policy on realtime.messages lets role \(member.caller.role) insert into this channel")
            return
        }
        plugin.deliver(topic: inbound.topic, body: body, from: connection, isPrivate: member.isPrivate)
        if inbound.ref != nil {
            hub.reply(connection, topic: inbound.topic, event: "phx_reply", payload: Self.okReply, ref: inbound.ref, joinRef: inbound.joinRef)
        }
    }

    // MARK: presence

    private func presence(_ inbound: PhoenixInbound, _ connection: UInt64) {
        guard hub.membership(connection, topic: inbound.topic) != nil else {
            answerError(inbound, connection, "join \(inbound.topic) before tracking presence on it")
            return
        }
        let members = (try? JSONSlices.members(of: inbound.payload)) ?? []
        let event = members.first(where: { $0.key == "event" }).flatMap { JSONSlices.string($0.value) }
        switch event {
        case "track":
            let payload = members.first(where: { $0.key == "payload" }).map { Array($0.value) } ?? Array("{}".utf8)
            guard payload.first == UInt8(ascii: "{") else {
                answerError(inbound, connection, "presence payload must be a JSON object")
                return
            }
            guard payload.count <= 64 * 1024 else {
                answerError(inbound, connection, "presence payload is larger than 64 KiB")
                return
            }
            if let diff = hub.track(connection, topic: inbound.topic, payload: payload) {
                plugin.presenceChanged(topic: inbound.topic, joins: diff.joins, leaves: diff.leaves)
            }
        case "untrack":
            plugin.presenceChanged(topic: inbound.topic, joins: [], leaves: hub.untrack(connection, topic: inbound.topic))
        default:
            answerError(inbound, connection, "presence event must be \"track\" or \"untrack\"")
            return
        }
        if inbound.ref != nil {
            hub.reply(connection, topic: inbound.topic, event: "phx_reply", payload: Self.okReply, ref: inbound.ref, joinRef: inbound.joinRef)
        }
    }

    // MARK: access token

    private func refreshToken(_ inbound: PhoenixInbound, _ connection: UInt64) async {
        let token = (try? JSONSlices.members(of: inbound.payload))?.first { $0.key == "access_token" }.flatMap { JSONSlices.string($0.value) }
        guard let token, !token.isEmpty else {
            answerError(inbound, connection, "access_token payload needs {\"access_token\": <jwt>}")
            return
        }
        switch await plugin.verify(token: token) {
        case .success(let caller):
            hub.updateCaller(connection, to: caller, token: token)
        case .failure(let reason):
            let name = String(inbound.topic.dropFirst("realtime:".count))
            hub.reply(
                connection, topic: inbound.topic, event: "system",
                payload: Self.system(topic: name, extension: "system", status: "error", message: "Invalid token: \(reason)"), ref: nil, joinRef: inbound.joinRef)
            hub.reply(connection, topic: inbound.topic, event: "phx_close", payload: Array("{}".utf8), ref: nil, joinRef: inbound.joinRef)
            plugin.presenceChanged(topic: inbound.topic, joins: [], leaves: hub.leave(connection, topic: inbound.topic))
        }
    }

    // MARK: replies

    static let okReply = Array(#"{"status":"ok","response":{}}"#.utf8)

    static func errorReply(_ reason: String) -> [UInt8] {
        var output = Array(#"{"status":"error","response":{"reason":"#.utf8)
        JSONStringWriter.append(reason.utf8, to: &output)
        output += Array("}}".utf8)
        return output
    }

    /// A `system` payload `{channel, extension, message, status}`.
    static func system(topic: String, extension: String, status: String, message: String) -> [UInt8] {
        var output = Array(#"{"channel":"#.utf8)
        JSONStringWriter.append(topic.utf8, to: &output)
        output += Array(#","extension":"#.utf8)
        JSONStringWriter.append(`extension`.utf8, to: &output)
        output += Array(#","message":"#.utf8)
        JSONStringWriter.append(message.utf8, to: &output)
        output += Array(#","status":"#.utf8)
        JSONStringWriter.append(status.utf8, to: &output)
        output.append(UInt8(ascii: "}"))
        return output
    }

    /// Answers an error to the message's ref, or as a `system` message when it has none.
    private func answerError(_ inbound: PhoenixInbound, _ connection: UInt64, _ reason: String) {
        if inbound.ref != nil {
            hub.reply(connection, topic: inbound.topic, event: "phx_reply", payload: Self.errorReply(reason), ref: inbound.ref, joinRef: inbound.joinRef)
        } else {
            let name = inbound.topic.hasPrefix("realtime:") ? String(inbound.topic.dropFirst("realtime:".count)) : inbound.topic
            hub.reply(
                connection, topic: inbound.topic, event: "system", payload: Self.system(topic: name, extension: "system", status: "error", message: reason),
                ref: nil, joinRef: inbound.joinRef)
        }
    }
}
