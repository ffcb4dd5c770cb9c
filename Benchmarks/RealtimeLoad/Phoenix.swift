// The WebSocket client: NIO's HTTP/1 upgrade, then NIO's frame codec and one small
// handler per connection speaking Phoenix vsn=1.0.0 (join, heartbeat, deliveries).
// No Task per connection: everything runs on the connection's event loop.
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Where and how to connect, shared by every connection of a run.
struct Target: Sendable {
    var host: String
    var port: Int
    /// Request path with query, e.g. /p/bench/realtime/v1/websocket?apikey=...&vsn=1.0.0
    var path: String
    /// The JSON key (with quotes and colon) whose number is the send timestamp.
    var marker: [UInt8]
    /// How a delivery's timestamp compares with now.
    var clock: Clock

    enum Clock: Sendable {
        case monotonicNanoseconds
        case realtimeMicroseconds
    }

    var address: SocketAddress { get throws { try SocketAddress(ipAddress: host, port: port) } }
}

/// Builds the phx_join text of a topic; `filter` (such as `owner=eq.<uuid>`) narrows the
/// postgres_changes binding.
func joinMessage(topic: String, postgresTable: String?, accessToken: String?, filter: String? = nil) -> String {
    let filterField = filter.map { #","filter":"\#($0)""# } ?? ""
    let changes = postgresTable.map { #"[{"event":"*","schema":"public","table":"\#($0)"\#(filterField)}]"# } ?? "[]"
    let token = accessToken.map { #","access_token":"\#($0)""# } ?? ""
    return
        #"{"topic":"realtime:\#(topic)","event":"phx_join","payload":{"config":{"broadcast":{"ack":false,"self":false},"presence":{"enabled":false},"postgres_changes":\#(changes)}\#(token)},"ref":"1","join_ref":"1"}"#
}

private let phxReply = Array("\"phx_reply\"".utf8)
private let statusOK = Array("\"status\":\"ok\"".utf8)
private let phoenixTopic = Array("\"topic\":\"phoenix\"".utf8)
private let refOne = Array("\"ref\":\"1\"".utf8)

/// One Phoenix socket after the upgrade. Joins its topic as soon as it is added, counts
/// deliveries (frames holding the marker) and answers pings; heartbeats come from the
/// loop's timer (`startHeartbeats`).
final class PhoenixClient: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let stats: LoopStats
    private let join: ByteBuffer
    private let marker: [UInt8]
    private let clock: Target.Clock
    private var context: ChannelHandlerContext?
    private var joined = false
    private var finished = false
    private var ref: UInt32 = 1
    /// Position in `stats.clients` while joined.
    var slot = -1
    /// Called once when the join is answered ok (the publisher uses it).
    var onJoined: ((PhoenixClient) -> Void)?

    init(stats: LoopStats, join: ByteBuffer, target: Target) {
        self.stats = stats
        self.join = join
        self.marker = target.marker
        self.clock = target.clock
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        stats.connected += 1
        send(join)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func send(_ text: ByteBuffer) {
        guard let context else { return }
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: text)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    func sendText(_ text: String) {
        guard let context else { return }
        send(context.channel.allocator.buffer(string: text))
    }

    func heartbeat() {
        ref &+= 1
        sendText(#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"\#(ref)"}"#)
    }

    func nextRef() -> UInt32 {
        ref &+= 1
        return ref
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary, .continuation:
            let data = frame.unmaskedData
            let (found, value) = number(after: marker, in: data)
            if found {
                var latency: UInt64?
                let now = monotonicNanoseconds()
                if let value {
                    switch clock {
                    case .monotonicNanoseconds: latency = now >= value ? (now - value) / 1000 : 0
                    case .realtimeMicroseconds:
                        let wall = realtimeMicroseconds()
                        latency = wall >= value ? wall - value : 0
                    }
                }
                stats.delivered(latency: latency, at: now)
            } else if !joined, contains(phxReply, in: data), !contains(phoenixTopic, in: data), contains(refOne, in: data) {
                if contains(statusOK, in: data) {
                    joined = true
                    stats.joined += 1
                    slot = stats.clients.count
                    stats.clients.append(self)
                    onJoined?(self)
                } else {
                    finished = true
                    stats.joinErrors += 1
                    stats.fail("join refused: \(String(buffer: data).prefix(300))")
                    context.close(promise: nil)
                }
            } else {
                stats.otherFrames &+= 1
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        leave()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if stats.firstError == nil { stats.firstError = "socket error: \(error)" }
        context.close(promise: nil)
    }

    private func leave() {
        if joined {
            joined = false
            stats.closedAfterJoin += 1
            // Swap-remove from the heartbeat list.
            let last = stats.clients.count - 1
            if slot >= 0 && slot <= last {
                stats.clients.swapAt(slot, last)
                stats.clients[slot].slot = slot
                stats.clients.removeLast()
            }
            slot = -1
        } else if !finished {
            finished = true
            stats.fail("closed before the join was answered")
        }
    }
}

/// Sits behind the HTTP client handlers until the upgrade succeeds (then it is removed):
/// a non-101 answer, an error or a close before the upgrade counts as a failed connection.
final class UpgradeWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    static let name = "mb-upgrade-watch"
    private let stats: LoopStats
    private var done = false

    init(stats: LoopStats) { self.stats = stats }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            fail("upgrade refused: HTTP \(head.status.code)", context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail("upgrade failed: \(error)", context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail("closed before the upgrade", context: context)
        context.fireChannelInactive()
    }

    private func fail(_ reason: String, context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        stats.fail(reason)
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) { done = true }
}

/// Opens one Phoenix socket on `loop` from `source`; `join` is the phx_join text. The
/// returned future completes when TCP is connected and the upgrade request is written;
/// the outcome (joined or failed) lands in the loop's counters. `configure` runs on the
/// loop with the client once it is in the pipeline.
func openPhoenix(
    loops: Loops, loopIndex: Int, source: SocketAddress?, target: Target, join: String,
    configure: (@Sendable (PhoenixClient) -> Void)? = nil
) {
    let loop = loops.loops[loopIndex]
    let bound = loops.stats[loopIndex]
    loop.execute {
        let stats = bound.value
        stats.started += 1
        var bootstrap = ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(15))
        if let source { bootstrap = bootstrap.bind(to: source) }
        let path = target.path
        let host = target.host
        bootstrap = bootstrap.channelInitializer { channel in
            let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 24, automaticErrorHandling: false) { channel, _ in
                do {
                    let ops = channel.pipeline.syncOperations
                    let watch = try ops.context(name: UpgradeWatch.name)
                    ops.removeHandler(context: watch, promise: nil)
                    let client = PhoenixClient(stats: bound.value, join: channel.allocator.buffer(string: join), target: target)
                    if let configure { configure(client) }
                    try ops.addHandler(client)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            do {
                let ops = channel.pipeline.syncOperations
                try ops.addHTTPClientHandlers(withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
                try ops.addHandler(UpgradeWatch(stats: bound.value), name: UpgradeWatch.name)
                return channel.eventLoop.makeSucceededVoidFuture()
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
        let address: SocketAddress
        do { address = try target.address } catch {
            stats.fail("bad address: \(error)")
            return
        }
        bootstrap.connect(to: address).whenComplete { result in
            switch result {
            case .success(let channel):
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "\(host):\(target.port)")
                headers.add(name: "Content-Length", value: "0")
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            case .failure(let error):
                bound.value.fail("connect failed: \(error)")
            }
        }
    }
}

/// Sends a heartbeat to each joined client of each loop every 25 s, spread over the
/// 25 s (one 25th of the clients each second).
func startHeartbeats(loops: Loops) {
    for (i, loop) in loops.loops.enumerated() {
        let bound = loops.stats[i]
        loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let stats = bound.value
            let tick = stats.heartbeatTick % 25
            stats.heartbeatTick += 1
            var k = tick
            while k < stats.clients.count {
                stats.clients[k].heartbeat()
                k += 25
            }
        }
    }
}

/// Opens `count` sockets at most `rate` per second with at most `inflight` unsettled at
/// a time, then waits until every one joined or failed (or `deadline`). Returns the counters.
func ramp(
    loops: Loops, count: Int, rate: Int, inflight: Int, deadline: UInt64, sources: SourceAddresses?,
    open: (Int, Int, SocketAddress?) -> Void
) async throws -> Counters {
    let start = monotonicNanoseconds()
    var issued = 0
    var counters = try await loops.counters()
    let base = counters.settled
    var lastReport = start
    while monotonicNanoseconds() < deadline {
        counters = try await loops.counters()
        let settled = counters.settled - base
        if issued >= count && settled >= count { break }
        if issued < count {
            let elapsed = Double(monotonicNanoseconds() - start) / 1e9
            let allowedByRate = Int(Double(rate) * elapsed) + 1 - issued
            let allowedByInflight = inflight - (issued - settled)
            let batch = min(count - issued, max(0, min(allowedByRate, allowedByInflight)))
            for _ in 0..<batch {
                open(issued, issued % loops.loops.count, sources?.address(for: issued))
                issued += 1
            }
        }
        let now = monotonicNanoseconds()
        if now - lastReport > 2_000_000_000 {
            lastReport = now
            warn("ramp: issued \(issued)/\(count), joined \(counters.joined), failed \(counters.failed)")
        }
        try await Task.sleep(nanoseconds: 5_000_000)
    }
    return try await loops.counters()
}
