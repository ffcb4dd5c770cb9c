import MeltyJSON
import Synchronization

/// A frame to write to a client.
public enum OutboundFrame: Sendable, Equatable {
    /// A text frame (JSON).
    case text([UInt8])
    /// A binary frame (v2 broadcasts).
    case binary([UInt8])
}

/// Where the hub writes frames: the kernel's WebSocket connections (the plugin), or a test.
public protocol FrameSender: Sendable {
    /// Queues `frame` for each of `connections` (never blocks).
    func send(_ frame: OutboundFrame, to connections: [UInt64])
    /// Closes a connection with a WebSocket close code.
    func close(_ connection: UInt64, code: UInt16, reason: String)
}

/// Who a client is, as its token says: what row-level security and channel policies see.
public struct Caller: Sendable, Equatable, Hashable, Codable {
    /// `anon`, `authenticated`, `service_role`, ...
    public var role: String
    /// The `sub` claim, when present.
    public var subject: String?
    /// The token's claims as JSON text (what `request.jwt.claims` is set to).
    public var claimsJSON: [UInt8]
    /// The `exp` claim (seconds since 1970), when present.
    public var expiresAt: Double?

    /// A caller.
    public init(role: String, subject: String?, claimsJSON: [UInt8], expiresAt: Double?) {
        self.role = role
        self.subject = subject
        self.claimsJSON = claimsJSON
        self.expiresAt = expiresAt
    }
}

/// One `postgres_changes` binding of a joined channel, as the change path sees it.
public struct ChangeSubscription: Sendable {
    /// The connection that joined.
    public var connection: UInt64
    /// Its protocol version.
    public var version: ProtocolVersion
    /// The channel's topic.
    public var topic: String
    /// The id sent back in the join reply and in each event's `ids`.
    public var id: Int
    /// `*`, `INSERT`, `UPDATE` or `DELETE`.
    public var event: String
    /// Schema (default `public`).
    public var schema: String
    /// Table, or nil for every table of the schema.
    public var table: String?
    /// The filter text, when any (parsed by the change path).
    public var filter: String?
    /// Who joined (RLS is checked as this caller).
    public var caller: Caller
}

/// The channels of one portal on one kernel: connections, their joined channels, presence
/// and the `postgres_changes` bindings. Fan-out encodes a frame once per protocol version and
/// hands the whole list of connections to the sender in one call.
///
/// All methods are synchronous and short (a lock around dictionaries); the plugin does the
/// asynchronous parts (token checks, policy queries, Redis) before and after.
public final class ChannelHub: Sendable {
    /// This kernel's id in presence entries and cross-kernel messages.
    public let node: String
    private let sender: any FrameSender

    struct Member {
        var version: ProtocolVersion
        var joinRef: String?
        var receiveOwn: Bool
        var canWrite: Bool
        var isPrivate: Bool
        var presenceKey: String
        var changeIDs: [Int]
        var caller: Caller
    }

    struct Topic {
        var members: [UInt64: Member] = [:]
        var presence = PresenceTable()
    }

    struct Connection {
        var version: ProtocolVersion
        var caller: Caller?
        var token: String?
        var topics: Set<String> = []
    }

    struct State {
        var connections: [UInt64: Connection] = [:]
        var topics: [String: Topic] = [:]
        var subscriptions: [String: [ChangeSubscription]] = [:]
        var nextChangeID = 1
        var nextPresenceRef: UInt64 = 1
    }

    private let state = Mutex(State())

    /// A hub writing through `sender`, identified as `node` across kernels.
    public init(node: String, sender: any FrameSender) {
        self.node = node
        self.sender = sender
    }

    // MARK: connections

    /// Registers an opened connection; `token` is the key it connected with (a join that
    /// sends the same token as `access_token` needs no second check).
    public func open(_ connection: UInt64, version: ProtocolVersion, caller: Caller?, token: String? = nil) {
        state.withLock { $0.connections[connection] = Connection(version: version, caller: caller, token: token) }
    }

    /// The protocol version, socket-level caller and token, and joined topics of a connection; nil when unknown.
    public func connection(_ connection: UInt64) -> (version: ProtocolVersion, caller: Caller?, token: String?, topics: Set<String>)? {
        state.withLock { state in state.connections[connection].map { ($0.version, $0.caller, $0.token, $0.topics) } }
    }

    /// Forgets a connection and leaves its channels; returns the presence entries it held
    /// per topic (already announced locally; the plugin tells other kernels).
    @discardableResult
    public func close(_ connection: UInt64) -> [(topic: String, leaves: [PresenceTable.Entry])] {
        let topics = state.withLock { $0.connections.removeValue(forKey: connection)?.topics ?? [] }
        return topics.compactMap { topic in
            let leaves = leave(connection, topic: topic)
            return leaves.isEmpty ? nil : (topic, leaves)
        }
    }

    /// Number of open connections and of joined channels.
    public var counts: (connections: Int, channels: Int, subscriptions: Int) {
        state.withLock { state in (state.connections.count, state.topics.count, state.subscriptions.values.reduce(0) { $0 + $1.count }) }
    }

    /// The connections whose token expired at `now` (seconds since 1970), with their topics.
    public func expired(at now: Double) -> [(connection: UInt64, topics: [(topic: String, joinRef: String?)])] {
        state.withLock { state in
            var result: [(UInt64, [(String, String?)])] = []
            for (id, connection) in state.connections {
                var topics: [(String, String?)] = []
                for topic in connection.topics {
                    if let member = state.topics[topic]?.members[id], let expiry = member.caller.expiresAt, expiry <= now {
                        topics.append((topic, member.joinRef))
                    }
                }
                if !topics.isEmpty { result.append((id, topics)) }
            }
            return result
        }
    }

    // MARK: channels

    /// What a join registered.
    public struct Joined: Sendable {
        /// The ids of the `postgres_changes` bindings, in the order given.
        public var changeIDs: [Int]
        /// The channel's presence state (`presence_state` payload).
        public var presenceState: [UInt8]
        /// What the connection tracked under an earlier join of the same topic (now left).
        public var replacedPresence: [PresenceTable.Entry] = []
    }

    /// Joins `connection` to `topic` (a second join of the same topic replaces the first).
    /// The `postgres_changes` bindings are live in the change path when this returns.
    public func join(
        _ connection: UInt64, topic: String, joinRef: String?, request: JoinRequest, caller: Caller, canWrite: Bool
    ) -> Joined {
        let replaced = leave(connection, topic: topic)
        var joined = state.withLock { state in
            let version = state.connections[connection]?.version ?? .v1
            var ids: [Int] = []
            for binding in request.changes {
                let id = state.nextChangeID
                state.nextChangeID += 1
                ids.append(id)
                let schema = binding.schema ?? "public"
                let subscription = ChangeSubscription(
                    connection: connection, version: version, topic: topic, id: id, event: binding.event, schema: schema, table: binding.table,
                    filter: binding.filter, caller: caller)
                state.subscriptions[schema, default: []].append(subscription)
            }
            let member = Member(
                version: version, joinRef: joinRef, receiveOwn: request.receiveOwn, canWrite: canWrite, isPrivate: request.isPrivate,
                presenceKey: request.presenceKey, changeIDs: ids, caller: caller)
            state.topics[topic, default: Topic()].members[connection] = member
            state.connections[connection]?.topics.insert(topic)
            return Joined(changeIDs: ids, presenceState: state.topics[topic]?.presence.stateJSON() ?? Array("{}".utf8))
        }
        joined.replacedPresence = replaced
        return joined
    }

    /// The membership of `connection` in `topic`: join ref, write permission, privacy.
    public func membership(_ connection: UInt64, topic: String) -> (joinRef: String?, canWrite: Bool, isPrivate: Bool, caller: Caller)? {
        state.withLock { state in state.topics[topic]?.members[connection].map { ($0.joinRef, $0.canWrite, $0.isPrivate, $0.caller) } }
    }

    /// Leaves `topic`; announces the connection's presence leaves locally and returns them.
    @discardableResult
    public func leave(_ connection: UInt64, topic: String) -> [PresenceTable.Entry] {
        let leaves = state.withLock { state -> [PresenceTable.Entry] in
            guard var channel = state.topics[topic], let member = channel.members.removeValue(forKey: connection) else { return [] }
            state.connections[connection]?.topics.remove(topic)
            if !member.changeIDs.isEmpty {
                let ids = Set(member.changeIDs)
                for schema in state.subscriptions.keys {
                    state.subscriptions[schema]?.removeAll { $0.connection == connection && ids.contains($0.id) }
                }
                state.subscriptions = state.subscriptions.filter { !$0.value.isEmpty }
            }
            let leaves = channel.presence.remove(node: node, connection: connection)
            if channel.members.isEmpty && channel.presence.isEmpty {
                state.topics.removeValue(forKey: topic)
            } else {
                state.topics[topic] = channel
            }
            return leaves
        }
        if !leaves.isEmpty { announcePresence(topic: topic, joins: [], leaves: leaves) }
        return leaves
    }

    /// Replaces the caller of a connection's channels after an `access_token` message.
    public func updateCaller(_ connection: UInt64, to caller: Caller, token: String) {
        state.withLock { state in
            state.connections[connection]?.caller = caller
            state.connections[connection]?.token = token
            for topic in state.connections[connection]?.topics ?? [] { state.topics[topic]?.members[connection]?.caller = caller }
            for schema in state.subscriptions.keys {
                for index in state.subscriptions[schema, default: []].indices where state.subscriptions[schema]?[index].connection == connection {
                    state.subscriptions[schema]?[index].caller = caller
                }
            }
        }
    }

    // MARK: broadcast

    /// Delivers a broadcast to the members of `topic` on this kernel; `sender` (the pushing
    /// connection) receives it only with `self: true`. Returns the number of deliveries.
    @discardableResult
    public func broadcast(topic: String, body: BroadcastBody, from origin: UInt64? = nil, meta: [UInt8]? = nil) -> Int {
        let audience = state.withLock { state -> [(UInt64, ProtocolVersion)] in
            guard let members = state.topics[topic]?.members else { return [] }
            return members.compactMap { id, member in
                if id == origin && !member.receiveOwn { return nil }
                return (id, member.version)
            }
        }
        guard !audience.isEmpty else { return 0 }
        var delivered = 0
        let v1 = audience.filter { $0.1 == .v1 }.map(\.0)
        let v2 = audience.filter { $0.1 == .v2 }.map(\.0)
        if !v1.isEmpty, let payload = PhoenixFrame.broadcastPayload(body, meta: meta) {
            sender.send(.text(PhoenixFrame.encode(version: .v1, joinRef: nil, ref: nil, topic: topic, event: "broadcast", payload: payload)), to: v1)
            delivered += v1.count
        }
        if !v2.isEmpty, let frame = PhoenixFrame.binaryBroadcast(topic: topic, body: body, meta: meta ?? []) {
            sender.send(.binary(frame), to: v2)
            delivered += v2.count
        }
        return delivered
    }

    /// Sends a server event (`presence_diff`, `system`, ...) to every member of `topic`.
    public func publish(topic: String, event: String, payload: [UInt8]) {
        let audience = state.withLock { state in state.topics[topic]?.members.map { ($0.key, $0.value.version) } ?? [] }
        for version in ProtocolVersion.allCases {
            let ids = audience.filter { $0.1 == version }.map(\.0)
            if ids.isEmpty { continue }
            sender.send(.text(PhoenixFrame.encode(version: version, joinRef: nil, ref: nil, topic: topic, event: event, payload: payload)), to: ids)
        }
    }

    /// Queues a frame for `connections` (the change path's pre-encoded events).
    public func send(_ frame: OutboundFrame, to connections: [UInt64]) {
        sender.send(frame, to: connections)
    }

    /// Sends one message to one connection in its protocol version.
    public func reply(_ connection: UInt64, topic: String, event: String, payload: [UInt8], ref: String?, joinRef: String?) {
        let version = state.withLock { $0.connections[connection]?.version } ?? .v1
        sender.send(.text(PhoenixFrame.encode(version: version, joinRef: joinRef, ref: ref, topic: topic, event: event, payload: payload)), to: [connection])
    }

    // MARK: presence

    /// Tracks `payload` for `connection` on `topic` (replacing what it tracked before);
    /// returns the joins and leaves to announce to other kernels (already announced here).
    public func track(_ connection: UInt64, topic: String, payload: [UInt8]) -> (joins: [PresenceTable.Entry], leaves: [PresenceTable.Entry])? {
        let diff = state.withLock { state -> ([PresenceTable.Entry], [PresenceTable.Entry])? in
            guard var channel = state.topics[topic], let member = channel.members[connection] else { return nil }
            let ref = "\(node)-\(state.nextPresenceRef)"
            state.nextPresenceRef += 1
            let key = member.presenceKey.isEmpty ? "\(node)-\(connection)" : member.presenceKey
            let leaves = channel.presence.remove(node: node, connection: connection)
            let entry = PresenceTable.Entry(key: key, ref: ref, meta: PresenceTable.meta(ref: ref, payload: payload), node: node, connection: connection)
            let joins = channel.presence.insert([entry])
            state.topics[topic] = channel
            return (joins, leaves)
        }
        guard let diff else { return nil }
        announcePresence(topic: topic, joins: diff.0, leaves: diff.1)
        return (diff.0, diff.1)
    }

    /// Removes what `connection` tracked on `topic`; returns the leaves (announced here).
    public func untrack(_ connection: UInt64, topic: String) -> [PresenceTable.Entry] {
        let leaves = state.withLock { state -> [PresenceTable.Entry] in
            guard state.topics[topic] != nil else { return [] }
            return state.topics[topic]?.presence.remove(node: node, connection: connection) ?? []
        }
        if !leaves.isEmpty { announcePresence(topic: topic, joins: [], leaves: leaves) }
        return leaves
    }

    /// Applies presence changes from another kernel and announces them to local members.
    public func applyRemotePresence(topic: String, joins: [PresenceTable.Entry], leaves: [String]) {
        let diff = state.withLock { state -> ([PresenceTable.Entry], [PresenceTable.Entry]) in
            var channel = state.topics[topic] ?? Topic()
            let removed = channel.presence.remove(refs: leaves)
            let added = channel.presence.insert(joins.filter { $0.node != node })
            if channel.members.isEmpty && channel.presence.isEmpty {
                state.topics.removeValue(forKey: topic)
            } else {
                state.topics[topic] = channel
            }
            return (added, removed)
        }
        if !diff.0.isEmpty || !diff.1.isEmpty { announcePresence(topic: topic, joins: diff.0, leaves: diff.1) }
    }

    /// Drops every presence entry of a kernel that stopped answering; announces the leaves.
    public func forgetNode(_ dead: String) {
        let removed = state.withLock { state -> [(String, [PresenceTable.Entry])] in
            var result: [(String, [PresenceTable.Entry])] = []
            for topic in Array(state.topics.keys) {
                guard var channel = state.topics[topic] else { continue }
                let leaves = channel.presence.remove(node: dead)
                if leaves.isEmpty { continue }
                result.append((topic, leaves))
                if channel.members.isEmpty && channel.presence.isEmpty {
                    state.topics.removeValue(forKey: topic)
                } else {
                    state.topics[topic] = channel
                }
            }
            return result
        }
        for (topic, leaves) in removed { announcePresence(topic: topic, joins: [], leaves: leaves) }
    }

    /// This kernel's presence entries by topic (what another kernel asks for when it starts).
    public func localPresence() -> [(topic: String, entries: [PresenceTable.Entry])] {
        state.withLock { state in
            state.topics.compactMap { topic, channel in
                let entries = channel.presence.entries(of: node)
                return entries.isEmpty ? nil : (topic, entries)
            }
        }
    }

    private func announcePresence(topic: String, joins: [PresenceTable.Entry], leaves: [PresenceTable.Entry]) {
        publish(topic: topic, event: "presence_diff", payload: PresenceTable.diffJSON(joins: joins, leaves: leaves))
    }

    // MARK: postgres changes

    /// The live `postgres_changes` bindings on `schema`.
    public func changeSubscriptions(schema: String) -> [ChangeSubscription] {
        state.withLock { $0.subscriptions[schema] ?? [] }
    }

    /// Whether any connection on this kernel listens to changes.
    public var hasChangeSubscriptions: Bool {
        state.withLock { !$0.subscriptions.isEmpty }
    }
}
