import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import PortalDatabaseCore
import RealtimeCore
import Synchronization

/// The Realtime plugin: Supabase Realtime's WebSocket protocol at
/// `/p/<portal>/realtime/v1/websocket` (broadcast, presence, Postgres changes checked by
/// row-level security), fanned out across kernels through Redis. See `docs/realtime.md`.
public final class RealtimePlugin: PortalPlugin {
    /// Name, version and route prefix.
    public static let description = PluginDescription(name: "realtime", version: "0.1.0", routePrefix: "realtime")

    /// The Realtime page of the Studio (ABI 1.5): counts and a channel inspector.
    public static var studio: StudioDefinition? {
        StudioDefinition(directory: "MeltyBase_RealtimePlugin.resources/Studio", pages: [StudioPageDefinition(id: "live", title: "Realtime", module: "realtime.js")])
    }

    /// Whether this kernel reaches the other kernels (Redis) for `meltybase doctor` and the overview.
    public static var healthCheck: (@Sendable () async -> PluginHealthReport)? {
        {
            guard let runtime = Self.runtime else { return PluginHealthReport(.failing, "not started") }
            guard let mesh = runtime.mesh else { return PluginHealthReport(.degraded, "no Redis: broadcasts and presence stay on this kernel") }
            return mesh.isConnected
                ? PluginHealthReport(.ok, "node \(runtime.node); \(mesh.kernels.count) other kernel(s) in the mesh")
                : PluginHealthReport(.degraded, "Redis is unreachable: other kernels do not see this one's broadcasts")
        }
    }

    /// What `start` set up, shared by every portal's instance.
    struct Runtime: Sendable {
        let host: PluginHostServices
        let settings: RealtimeSettings
        let loop: PostgresEventLoop
        /// This kernel's id among the kernels sharing Redis.
        let node: String
        /// Redis pub/sub between kernels; nil without Redis (one kernel only).
        let mesh: RealtimeMesh?
    }

    private static let current = Mutex<Runtime?>(nil)
    static var runtime: Runtime? { current.withLock { $0 } }

    let portal: Portal
    let runtime: Runtime
    let hub: ChannelHub
    let policies: ChannelPolicies
    let pool: PostgresPool
    let joins: TokenBucket
    let messages: TokenBucket
    /// The portal's slot, streamed by one kernel of all (advisory lock).
    let feed: ChangeFeed
    let slot: String
    let delivery: ChangeDelivery
    /// Whether the slot was seen to exist (a join waits for it once).
    let slotReady = Mutex(false)
    /// Whether this kernel heard its own probe on the portal's mesh channel: from then on
    /// changes streamed by another kernel reach it.
    let meshLive = SharedFlag()
    private let meshInbox: AsyncStream<[RowChange]>.Continuation
    /// Private broadcasts to store for replay, in order (one writer).
    let replayInbox: AsyncStream<(topic: String, body: BroadcastBody)>.Continuation
    private let replayWriter: Task<Void, Never>
    private let meshConsumer: Task<Void, Never>
    private let expiryTimer: Task<Void, Never>
    private let schemaListener: Task<Void, Never>

    /// Reads the limits and origins; starts the plugin's Postgres loop.
    public static func start(host: PluginHostServices, config: PluginConfig) throws {
        let settings = try RealtimeSettings(config: config)
        var random = SystemRandomNumberGenerator()
        let node = String(random.next(), radix: 36)
        var mesh: RealtimeMesh?
        if let url = host.redisURL {
            do {
                mesh = try RealtimeMesh(url: url, node: node) { host.log(.warning, $0) }
            } catch {
                host.log(.error, "realtime: cannot reach the kernel's Redis (\(error)); broadcasts and presence stay on this kernel")
            }
        } else {
            host.log(.notice, "realtime: the kernel has no Redis; broadcasts and presence stay on this kernel")
        }
        let started = Runtime(host: host, settings: settings, loop: PostgresEventLoop(name: "meltybase-realtime-postgres"), node: node, mesh: mesh)
        current.withLock { $0 = started }
        host.log(.info, "realtime: node \(node), at most \(settings.maxConnections) connections per portal")
    }

    /// Stops the Postgres loop.
    public static func shutdown() {
        let stopped = current.withLock { runtime -> Runtime? in
            defer { runtime = nil }
            return runtime
        }
        stopped?.mesh?.close()
        stopped?.loop.shutdown()
    }

    /// Creates the portal's channel hub and the `realtime` schema in its database.
    public init(portal: Portal, config: PluginConfig) throws {
        guard let runtime = Self.runtime else { throw PluginError.unavailable("realtime: the plugin is not started") }
        let system = try runtime.host.postgresConninfo(portal: portal)
        guard !system.isEmpty else { throw PluginError.unavailable("realtime: the host gives no Postgres conninfo (needs ABI 1.1 or later)") }
        self.portal = portal
        self.runtime = runtime
        let conninfo = PortalDatabaseNames.conninfo(system, portal: portal.name)
        pool = PostgresPool(conninfo: Conninfo.derive(conninfo, overrides: ["application_name": "meltybase-realtime"]), size: 4, maxWaiting: 1_000, loop: runtime.loop)
        policies = ChannelPolicies(pool: pool)
        hub = ChannelHub(node: runtime.node, sender: SocketFrameSender())
        // Row visibility is checked as the API does: logged in as `authenticator`, switching into the subscriber's role.
        let authenticator = PostgresPool(
            conninfo: Conninfo.derive(PortalDatabaseNames.conninfo(system, portal: portal.name, user: "authenticator"), overrides: ["application_name": "meltybase-realtime"]),
            size: 2, maxWaiting: 10_000, loop: runtime.loop)
        let visibility = VisibilityCheck()
        var changeDelivery = ChangeDelivery(hub: hub, pool: authenticator, visibility: visibility)
        let pluginHost = runtime.host
        changeDelivery.warn = { pluginHost.log(.warning, $0) }
        delivery = changeDelivery
        // Transactions that arrive while one is being delivered go together: one visibility query per audience for all of them.
        feed = ChangeFeed(loop: runtime.loop, options: ChangeFeed.Options(maxChangesPerCall: 2_000))
        slot = ChangeFeed.slotName(portal: portal.name)
        joins = TokenBucket(rate: Double(runtime.settings.maxJoinsPerSecond), burst: Double(runtime.settings.maxJoinsPerSecond * 2))
        messages = TokenBucket(rate: Double(runtime.settings.maxMessagesPerSecond), burst: Double(runtime.settings.maxMessagesPerSecond * 2))
        let semaphore = DispatchSemaphore(value: 0)
        let installed = Mutex<(any Error)?>(nil)
        let pool = self.pool
        let name = portal.name
        Task {
            // The Database plugin creates the portal's database in its own instance_create,
            // which may run beside this one: wait for it (30 s at most).
            let deadline = ContinuousClock.now + .seconds(30)
            while true {
                do {
                    try await ChannelPolicies.install(pool: pool, portal: name)
                    installed.withLock { $0 = nil }
                    break
                } catch {
                    installed.withLock { $0 = error }
                    if ContinuousClock.now > deadline { break }
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
            semaphore.signal()
        }
        semaphore.wait()
        if let error = installed.withLock({ $0 }) {
            pool.close()
            throw PluginError.unavailable("realtime: cannot prepare the realtime schema of portal \(portal.name)'s database (is the database plugin enabled for it?): \(error)")
        }
        let delivery = self.delivery
        let mesh = runtime.mesh

        feed.start(conninfo: conninfo, slot: slot) { changes in
            await delivery.deliver(changes)
            // The other kernels' subscribers; the slot is acknowledged once Redis took it.
            if let mesh {
                do {
                    try await mesh.send(portal: name, MeshMessage(node: mesh.node, kind: .changes, changes: changes))
                } catch {
                    runtime.host.log(.warning, "realtime: cannot pass changes of portal \(name) to other kernels: \(error)")
                }
            }
        }
        let (stored, storedContinuation) = AsyncStream<(topic: String, body: BroadcastBody)>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        replayInbox = storedContinuation
        let policies = self.policies
        replayWriter = Task {
            for await message in stored { try? await policies.store(topic: message.topic, body: message.body) }
        }
        let (inbox, inboxContinuation) = AsyncStream<[RowChange]>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        meshInbox = inboxContinuation
        meshConsumer = Task {
            for await changes in inbox { await delivery.deliver(changes) }
        }
        if let mesh {
            let live = meshLive
            mesh.attach(
                portal: name,
                link: RealtimeMesh.PortalLink(
                    hub: hub, changes: { inboxContinuation.yield($0) }, probeHeard: { live.set() }))
            mesh.probe(portal: name)
        }
        // DDL and GRANT/REVOKE announce themselves (the Database plugin's event trigger): forget cached privileges.
        let listener = PostgresListener(conninfo: conninfo, channels: ["pgrst"], loop: runtime.loop)
        schemaListener = Task {
            await listener.run { event in
                switch event {
                case .notification, .listening: visibility.reset()
                case .lost: break
                }
            }
        }
        let hub = self.hub
        let host = runtime.host
        let meteredPortal = portal
        expiryTimer = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                Self.closeExpired(hub: hub)
                // The Hub keeps the largest value of a `_peak` counter per hour: the open
                // connections, once a second (docs/hub.md).
                let open = hub.counts.connections
                if open > 0 { host.count("connections_peak", by: Int64(open), portal: meteredPortal) }
            }
        }
    }

    /// Stops the timers and the change feed (another kernel takes the slot over) and closes the pools.
    public func stop() {
        runtime.mesh?.detach(portal: portal.name)
        meshInbox.finish()
        replayInbox.finish()
        meshConsumer.cancel()
        expiryTimer.cancel()
        schemaListener.cancel()
        let feed = self.feed
        let semaphore = DispatchSemaphore(value: 0)
        Task {
            await feed.stop()
            semaphore.signal()
        }
        semaphore.wait()
        pool.close()
        delivery.pool.close()
    }

    /// Channels whose token expired get a `system` error and `phx_close`, as Supabase does.
    static func closeExpired(hub: ChannelHub) {
        for (connection, topics) in hub.expired(at: Date().timeIntervalSince1970) {
            for (topic, joinRef) in topics {
                hub.reply(
                    connection, topic: topic, event: "system",
                    payload: MessageHandler.system(topic: topic, extension: "system", status: "error", message: "Token has expired: send a fresh access_token and join again"),
                    ref: nil, joinRef: joinRef)
                hub.reply(connection, topic: topic, event: "phx_close", payload: Array("{}".utf8), ref: nil, joinRef: joinRef)
                hub.leave(connection, topic: topic)
            }
        }
    }

    // MARK: HTTP

    /// `POST /v1/api/broadcast` and `POST /v1/api/broadcast/<topic>/events/<event>`.
    public func handle(_ request: PluginRequest) async -> PluginResponse {
        await BroadcastEndpoint(plugin: self).handle(request)
    }

    // MARK: WebSocket

    /// Accepts `/v1/websocket?apikey=...&vsn=...` with a key of this portal.
    public func webSocketOpened(_ socket: WebSocketConnection, request: PluginRequest) throws {
        guard request.path == "/v1/websocket" || request.path == "/v1/websocket/" else {
            throw PluginError.notFound("realtime: connect to /p/\(portal.name)/realtime/v1/websocket?apikey=<key>&vsn=1.0.0")
        }
        let vsnText = request.queryItems["vsn"] ?? "1.0.0"
        guard let version = ProtocolVersion(rawValue: vsnText) else {
            throw PluginError.unsupported("realtime: vsn \(vsnText.prefix(32)) is not supported; use 1.0.0 or 2.0.0")
        }
        guard runtime.settings.allows(origin: request.header("origin"), portal: portal.name) else {
            throw PluginError.refused("realtime: origin \(request.header("origin") ?? "") is not allowed for portal \(portal.name)")
        }
        let credential = request.credential
        guard let caller = Self.caller(credential) else {
            let reason = credential.kind == .invalid ? (credential.reason ?? "the key does not verify") : "send the portal's API key as ?apikey="
            throw PluginError.refused("realtime: unauthorized: \(reason)")
        }
        guard hub.counts.connections < runtime.settings.maxConnections else {
            throw PluginError.refused("realtime: portal \(portal.name) has reached its limit of \(runtime.settings.maxConnections) connections")
        }
        hub.open(socket.id, version: version, caller: caller, token: Self.token(of: request))
        runtime.host.count("connections_opened", portal: portal)
        runtime.host.count("connections_peak", by: Int64(hub.counts.connections), portal: portal)
    }

    /// One client message.
    public func webSocketReceived(_ message: WebSocketMessage, on socket: WebSocketConnection) async {
        await MessageHandler(plugin: self).handle(message, from: socket.id)
    }

    /// Leaves the connection's channels and withdraws its presence.
    public func webSocketClosed(_ socket: WebSocketConnection, code: UInt16) async {
        for (topic, leaves) in hub.close(socket.id) { presenceChanged(topic: topic, joins: [], leaves: leaves) }
    }

    /// The token a request carried (bearer, else `apikey` header, else `apikey` query), as the kernel picks it.
    static func token(of request: PluginRequest) -> String? {
        if let authorization = request.header("authorization"), authorization.lowercased().hasPrefix("bearer ") {
            return String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        }
        return request.header("apikey") ?? request.queryItems["apikey"]
    }

    /// The caller a portal credential describes; nil for anything else.
    /// An admin at AAL2 (the Studio's inspector) acts as the service role, as on the other portal routes.
    static func caller(_ credential: PluginCredential) -> Caller? {
        if credential.isAdminAtAAL2 {
            var claims = Array(#"{"role":"service_role","sub":"#.utf8)
            JSONStringWriter.append((credential.subject ?? "").utf8, to: &claims)
            claims.append(UInt8(ascii: "}"))
            return Caller(role: "service_role", subject: credential.subject, claimsJSON: claims, expiresAt: credential.claims["exp"]?.numberValue)
        }
        guard credential.kind == .portal, let role = credential.role, !role.isEmpty else { return nil }
        let claims = credential.claims
        return Caller(role: role, subject: credential.subject, claimsJSON: credential.claimsJSON, expiresAt: claims["exp"]?.numberValue)
    }
}

/// A flag set once, shared with callbacks.
final class SharedFlag: Sendable {
    private let state = Mutex(false)
    /// Whether ``set()`` was called.
    var isSet: Bool { state.withLock { $0 } }
    /// Sets the flag.
    func set() { state.withLock { $0 = true } }
}

/// The hub's frames to the kernel's WebSocket connections.
struct SocketFrameSender: FrameSender {
    func send(_ frame: OutboundFrame, to connections: [UInt64]) {
        switch frame {
        case .text(let bytes):
            if connections.count == 1 {
                WebSocketConnection(id: connections[0]).send(textBytes: bytes)
            } else {
                WebSocketConnection.broadcast(bytes, isText: true, to: connections)
            }
        case .binary(let bytes):
            WebSocketConnection.broadcast(bytes, isText: false, to: connections)
        }
    }

    func close(_ connection: UInt64, code: UInt16, reason: String) {
        WebSocketConnection(id: connection).close(code: code, reason: reason)
    }
}

/// The C entry point the kernel looks up.
@_cdecl("meltybase_plugin_entry")
public func meltybasePluginEntry() -> UnsafeRawPointer { PluginExport.descriptor(for: RealtimePlugin.self) }
