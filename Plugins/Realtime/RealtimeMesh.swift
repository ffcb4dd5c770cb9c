import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyRedis
import RealtimeCore
import Synchronization

/// One message between kernels on a portal's Redis channel `meltybase:realtime:<portal>`.
struct MeshMessage: Codable, Sendable {
    enum Kind: String, Codable, Sendable {
        /// A broadcast to deliver to local members of `topic`.
        case broadcast
        /// Presence `joins` and `leaves` (refs) on `topic`.
        case presence
        /// A transaction's row changes, from the kernel that holds the portal's slot.
        case changes
        /// A kernel started serving the portal: others send their presence entries.
        case presenceSync
        /// A kernel checks that its own subscription is live (it hears its own probe).
        case probe
    }

    var node: String
    var kind: Kind
    var topic: String?
    var event: String?
    var payload: Data?
    var isJSON: Bool?
    var joins: [PresenceTable.Entry]?
    var leaves: [String]?
    var changes: [RowChange]?
}

/// The kernels' mesh: Redis pub/sub between kernels serving the same portals. Broadcasts,
/// presence changes and row changes cross it; each kernel delivers to its own sockets.
/// Kernels announce themselves every 2 seconds on `meltybase:realtime:nodes`; one silent for
/// 10 seconds is dead, and its presence entries leave every channel.
///
/// Redis pub/sub is at most once: a kernel cut off from Redis misses what is published
/// meanwhile (its sockets see it as a gap; presence resynchronises when it comes back).
final class RealtimeMesh: Sendable {
    static let nodesChannel = "meltybase:realtime:nodes"
    static let heartbeat: Duration = .seconds(2)
    static let deadAfter: Double = 10

    let node: String
    private let client: RedisClient
    private let subscriber: Mutex<RedisSubscriber?> = Mutex(nil)
    /// Portal instances by portal name, to route what arrives.
    private let portals = Mutex<[String: PortalLink]>([:])
    /// Other kernels and when they were last heard (seconds since 1970).
    private let nodes = Mutex<[String: Double]>([:])
    private let connected = Mutex(false)
    private let timer = Mutex<Task<Void, Never>?>(nil)
    private let log: @Sendable (String) -> Void
    /// Messages waiting to be published, in order, by one sender task; bounded so a slow
    /// Redis cannot grow the kernel (the oldest are dropped first, counted in `dropped`).
    private let outbox: AsyncStream<(portal: String, message: MeshMessage)>.Continuation
    private let sender: Task<Void, Never>
    /// Messages dropped because the outbox was full.
    let dropped = Mutex(0)
    static let outboxLimit = 10_000

    /// What the mesh calls on a portal's instance.
    struct PortalLink: Sendable {
        let hub: ChannelHub
        /// Queues another kernel's row changes for in-order delivery here.
        let changes: @Sendable ([RowChange]) -> Void
        let probeHeard: @Sendable () -> Void
    }

    init(url: String, node: String, log: @escaping @Sendable (String) -> Void) throws {
        self.node = node
        self.log = log
        let client = try RedisClient(url: url)
        self.client = client
        let (queued, outbox) = AsyncStream<(portal: String, message: MeshMessage)>.makeStream(bufferingPolicy: .bufferingNewest(Self.outboxLimit))
        self.outbox = outbox
        sender = Task {
            let encoder = JSONEncoder()
            for await (portal, message) in queued {
                guard let payload = try? encoder.encode(message) else { continue }
                _ = try? await client.publish(channel: Self.channel(portal: portal), payload: Array(payload))
            }
        }
        let subscriber = try RedisSubscriber(
            url: url, name: "meltybase-realtime",
            onMessage: { [weak self] channel, payload in self?.received(channel: channel, payload: payload) },
            onState: { [weak self] up in
                self?.connected.withLock { $0 = up }
                if up { self?.resynchronise() }
            })
        subscriber.subscribe([Self.nodesChannel])
        self.subscriber.withLock { $0 = subscriber }
        let heartbeat = Task { [weak self] in
            while !Task.isCancelled {
                guard let self else { return }
                await self.beat()
                try? await Task.sleep(for: Self.heartbeat)
            }
        }
        timer.withLock { $0 = heartbeat }
    }

    static func channel(portal: String) -> String { "meltybase:realtime:" + portal }

    /// Whether the subscriber is connected to Redis.
    var isConnected: Bool { connected.withLock { $0 } }

    /// The other kernels heard in the last 10 seconds.
    var kernels: [String] { nodes.withLock { Array($0.keys).sorted() } }

    /// Routes the portal's channel to `link` and asks other kernels for their presence.
    func attach(portal: String, link: PortalLink) {
        portals.withLock { $0[portal] = link }
        subscriber.withLock { $0 }?.subscribe([Self.channel(portal: portal)])
        publish(portal: portal, MeshMessage(node: node, kind: .presenceSync))
    }

    /// Stops routing the portal.
    func detach(portal: String) {
        portals.withLock { $0[portal] = nil }
        subscriber.withLock { $0 }?.unsubscribe([Self.channel(portal: portal)])
    }

    /// Sends a probe on the portal's channel (its arrival proves the subscription is live).
    func probe(portal: String) {
        publish(portal: portal, MeshMessage(node: node, kind: .probe))
    }

    /// Publishes without waiting (broadcasts and presence from message handlers), in order.
    func publish(portal: String, _ message: MeshMessage) {
        if case .dropped = outbox.yield((portal, message)) { dropped.withLock { $0 += 1 } }
    }

    /// Publishes and waits until Redis took it (row changes: the slot is acknowledged after).
    func send(portal: String, _ message: MeshMessage) async throws {
        let encoder = JSONEncoder()
        _ = try await client.publish(channel: Self.channel(portal: portal), payload: Array(try encoder.encode(message)))
    }

    /// Stops the heartbeat and the subscriber.
    func close() {
        outbox.finish()
        sender.cancel()
        timer.withLock { $0 }?.cancel()
        subscriber.withLock { subscriber in
            defer { subscriber = nil }
            return subscriber
        }?.close()
    }

    private func beat() async {
        _ = try? await client.publish(channel: Self.nodesChannel, payload: Array(node.utf8))
        let now = Date().timeIntervalSince1970
        let dead = nodes.withLock { nodes -> [String] in
            let gone = nodes.filter { now - $0.value > Self.deadAfter }.map(\.key)
            for name in gone { nodes.removeValue(forKey: name) }
            return gone
        }
        guard !dead.isEmpty else { return }
        let links = portals.withLock { Array($0.values) }
        for name in dead {
            log("realtime: kernel \(name) has not been heard for \(Int(Self.deadAfter)) s; its presence entries leave")
            for link in links { link.hub.forgetNode(name) }
        }
    }

    /// After (re)connecting: others may have changed presence meanwhile.
    private func resynchronise() {
        for portal in portals.withLock({ Array($0.keys) }) {
            publish(portal: portal, MeshMessage(node: node, kind: .presenceSync))
        }
    }

    private func received(channel: String, payload: [UInt8]) {
        if channel == Self.nodesChannel {
            let name = String(decoding: payload, as: UTF8.self)
            if name != node { nodes.withLock { $0[name] = Date().timeIntervalSince1970 } }
            return
        }
        guard channel.hasPrefix("meltybase:realtime:") else { return }
        let portal = String(channel.dropFirst("meltybase:realtime:".count))
        guard let link = portals.withLock({ $0[portal] }), let message = try? JSONDecoder().decode(MeshMessage.self, from: Data(payload)) else { return }
        if message.kind == .probe {
            if message.node == node { link.probeHeard() }
            return
        }
        guard message.node != node else { return }
        nodes.withLock { $0[message.node] = Date().timeIntervalSince1970 }
        switch message.kind {
        case .broadcast:
            guard let topic = message.topic, let event = message.event, let body = message.payload else { return }
            link.hub.broadcast(topic: topic, body: BroadcastBody(event: event, payload: Array(body), isJSON: message.isJSON ?? true))
        case .presence:
            guard let topic = message.topic else { return }
            link.hub.applyRemotePresence(topic: topic, joins: message.joins ?? [], leaves: message.leaves ?? [])
        case .changes:
            guard let changes = message.changes else { return }
            link.changes(changes)
        case .presenceSync:
            for (topic, entries) in link.hub.localPresence() {
                publish(portal: portal, MeshMessage(node: node, kind: .presence, topic: topic, joins: entries, leaves: []))
            }
        case .probe:
            break
        }
    }
}
