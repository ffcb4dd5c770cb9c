import Foundation
import MeltyJSON

/// What a `phx_join` asks for: `{config: {broadcast: {ack, self, replay}, presence: {enabled,
/// key}, postgres_changes: [...], private}, access_token}`.
public struct JoinRequest: Sendable, Equatable {
    /// One `postgres_changes` entry as the client sent it (echoed back with an id).
    public struct ChangeBinding: Sendable, Equatable {
        /// `*`, `INSERT`, `UPDATE` or `DELETE`.
        public var event: String
        /// Schema; absent means `public` for matching, and stays absent in the reply.
        public var schema: String?
        /// Table; absent means every table of the schema in the publication.
        public var table: String?
        /// `column=op.value`, when sent.
        public var filter: String?
    }

    /// `config.broadcast.ack`: reply to each broadcast push.
    public var acknowledge = false
    /// `config.broadcast.self`: deliver a client's broadcasts to itself too.
    public var receiveOwn = false
    /// `config.broadcast.replay.since` (milliseconds since 1970), when asked.
    public var replaySince: Double?
    /// `config.broadcast.replay.limit` (1 to 25).
    public var replayLimit = 25
    /// `config.presence.enabled` (or implied by a key).
    public var presenceEnabled = false
    /// `config.presence.key`: this client's presence key ("" means one is generated).
    public var presenceKey = ""
    /// `config.private`: the channel is authorised by the portal's `realtime.messages` policies.
    public var isPrivate = false
    /// `config.postgres_changes`, in order.
    public var changes: [ChangeBinding] = []
    /// `access_token`, when sent.
    public var accessToken: String?

    /// Most `postgres_changes` entries one join may carry.
    public static let maxChangeBindings = 100

    /// Reads a join payload; throws a message naming the field at fault.
    public init(payload: [UInt8]) throws(ProtocolError) {
        guard let root = JSONValue.object(json: payload) else { throw ProtocolError("phx_join payload must be a JSON object") }
        if let token = root["access_token"], token != .null {
            guard let text = token.stringValue else { throw ProtocolError("access_token must be a string") }
            accessToken = text.isEmpty ? nil : text
        }
        guard let configValue = root["config"], configValue != .null else { return }
        guard let config = configValue.objectValue else { throw ProtocolError("config must be an object") }
        if let broadcast = config["broadcast"], broadcast != .null {
            guard let object = broadcast.objectValue else { throw ProtocolError("config.broadcast must be an object") }
            acknowledge = try Self.flag(object["ack"], "config.broadcast.ack")
            receiveOwn = try Self.flag(object["self"], "config.broadcast.self")
            if let replay = object["replay"], replay != .null {
                guard let options = replay.objectValue else { throw ProtocolError("config.broadcast.replay must be an object {since, limit}") }
                guard let since = options["since"]?.numberValue, since.isFinite, since >= 0, since < 1e15 else {
                    throw ProtocolError("config.broadcast.replay.since must be milliseconds since 1970 (a non-negative number)")
                }
                replaySince = since
                if let limit = options["limit"], limit != .null {
                    guard let value = limit.numberValue, value.isFinite, value >= 1, value <= 25, value == value.rounded() else {
                        throw ProtocolError("config.broadcast.replay.limit must be an integer from 1 to 25")
                    }
                    replayLimit = Int(value)
                }
            }
        }
        if let presence = config["presence"], presence != .null {
            guard let object = presence.objectValue else { throw ProtocolError("config.presence must be an object") }
            if let key = object["key"], key != .null {
                guard let text = key.stringValue else { throw ProtocolError("config.presence.key must be a string") }
                guard text.utf8.count <= PhoenixFrame.maxNameBytes, !text.utf8.contains(0) else {
                    throw ProtocolError("config.presence.key must be at most \(PhoenixFrame.maxNameBytes) bytes without NUL")
                }
                presenceKey = text
            }
            presenceEnabled = try Self.flag(object["enabled"], "config.presence.enabled") || !presenceKey.isEmpty
        }
        isPrivate = try Self.flag(config["private"], "config.private")
        if let list = config["postgres_changes"], list != .null {
            guard let entries = list.arrayValue else { throw ProtocolError("config.postgres_changes must be an array") }
            guard entries.count <= Self.maxChangeBindings else {
                throw ProtocolError("config.postgres_changes has \(entries.count) entries; at most \(Self.maxChangeBindings) per channel")
            }
            for (index, entry) in entries.enumerated() {
                guard let object = entry.objectValue else { throw ProtocolError("config.postgres_changes[\(index)] must be an object") }
                func text(_ name: String) throws(ProtocolError) -> String? {
                    guard let value = object[name], value != .null else { return nil }
                    guard let string = value.stringValue, !string.utf8.contains(0), string.utf8.count <= 4096 else {
                        throw ProtocolError("config.postgres_changes[\(index)].\(name) must be a string of at most 4096 bytes without NUL")
                    }
                    return string
                }
                let event = try text("event") ?? "*"
                guard ["*", "INSERT", "UPDATE", "DELETE"].contains(event) else {
                    throw ProtocolError("config.postgres_changes[\(index)].event must be one of *, INSERT, UPDATE, DELETE; found \"\(event)\"")
                }
                changes.append(ChangeBinding(event: event, schema: try text("schema"), table: try text("table"), filter: try text("filter")))
            }
        }
    }

    private static func flag(_ value: JSONValue?, _ name: String) throws(ProtocolError) -> Bool {
        guard let value, value != .null else { return false }
        guard let flag = value.boolValue else { throw ProtocolError("\(name) must be true or false") }
        return flag
    }
}
