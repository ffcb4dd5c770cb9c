// The hidden self-test's server: a minimal Phoenix vsn=1.0.0 endpoint on swift-nio
// (join answered ok, heartbeat answered, broadcast forwarded to every other joined
// socket of its topic). It checks the generator, not anyone's performance.
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

final class FakeHub {
    var members: [String: [FakePhoenix]] = [:]
}

final class FakePhoenix: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    private let hub: FakeHub
    private var context: ChannelHandlerContext?
    private var topic: String?

    init(hub: FakeHub) { self.hub = hub }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func deliver(_ data: ByteBuffer) {
        context?.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: data)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.opcode == .text else {
            if frame.opcode == .connectionClose { context.close(promise: nil) }
            return
        }
        let text = String(buffer: frame.unmaskedData)
        let topic = text.split(separator: "\"topic\":\"").dropFirst().first?.split(separator: "\"").first.map(String.init) ?? ""
        let ref = text.split(separator: "\"ref\":\"").dropFirst().first?.split(separator: "\"").first.map(String.init) ?? ""
        if text.contains("\"phx_join\"") {
            self.topic = topic
            hub.members[topic, default: []].append(self)
            deliver(context.channel.allocator.buffer(string: #"{"topic":"\#(topic)","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"\#(ref)"}"#))
        } else if text.contains("\"heartbeat\"") {
            deliver(context.channel.allocator.buffer(string: #"{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"\#(ref)"}"#))
        } else if text.contains("\"broadcast\"") {
            // The inner payload as the server would send it, ref null.
            let inner = text.firstRange(of: "\"payload\":").map { text[$0.upperBound...] } ?? ""
            let body = inner.ranges(of: ",\"ref\"").last.map { inner[..<$0.lowerBound] } ?? inner
            let out = context.channel.allocator.buffer(string: #"{"topic":"\#(topic)","event":"broadcast","payload":\#(body),"ref":null}"#)
            for member in hub.members[topic] ?? [] where member !== self { member.deliver(out) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let topic { hub.members[topic]?.removeAll { $0 === self } }
        self.context = nil
        context.fireChannelInactive()
    }
}

/// Starts the fake server on one thread (so the hub needs no lock); returns the port.
func startFakeServer(group: EventLoopGroup) throws -> (Channel, Int) {
    let loop = group.next()
    let hub = try loop.submit { NIOLoopBound(FakeHub(), eventLoop: loop) }.wait()
    let channel = try ServerBootstrap(group: loop)
        .serverChannelOption(ChannelOptions.backlog, value: 4096)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            let upgrader = NIOWebSocketServerUpgrader(
                maxFrameSize: 1 << 20, automaticErrorHandling: false,
                shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
                upgradePipelineHandler: { channel, _ in
                    do {
                        try channel.pipeline.syncOperations.addHandler(FakePhoenix(hub: hub.value))
                        return channel.eventLoop.makeSucceededVoidFuture()
                    } catch { return channel.eventLoop.makeFailedFuture(error) }
                })
            do {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                    withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
                return channel.eventLoop.makeSucceededVoidFuture()
            } catch { return channel.eventLoop.makeFailedFuture(error) }
        }
        .bind(host: "127.0.0.1", port: 0).wait()
    return (channel, channel.localAddress?.port ?? 0)
}
