import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import Kernel

/// The WebSocket connection served in its pipeline: liveness pings, pongs, the closing
/// handshake both ways, and the bounds on what waits while the connection opens.
@Suite("WebSocket connection handler: pings, closes, bounds")
struct WebSocketConnectionHandlerTests {
    private static func connection(maxMessageBytes: Int = 1_024) throws -> (EmbeddedChannel, WebSocketConnectionHandler) {
        let handler = WebSocketConnectionHandler(maxMessageBytes: maxMessageBytes)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, handler)
    }

    private static func outbound(_ channel: EmbeddedChannel) throws -> [WebSocketFrame] {
        var frames: [WebSocketFrame] = []
        while let frame = try channel.readOutbound(as: WebSocketFrame.self) { frames.append(frame) }
        return frames
    }

    private static func closeCode(_ frame: WebSocketFrame) -> UInt16? {
        var data = frame.unmaskedData
        return frame.opcode == .connectionClose ? data.readInteger(as: UInt16.self) : nil
    }

    /// A client frame (masked, as clients must send them).
    private static func client(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true) -> WebSocketFrame {
        let key: WebSocketMaskingKey = [1, 2, 3, 4]
        var data = ByteBuffer(string: text)
        data.webSocketMask(key)
        return WebSocketFrame(fin: fin, opcode: opcode, maskKey: key, data: data)
    }

    @Test("an idle connection is pinged; one that answers stays, one that stays silent a whole period is closed")
    func liveness() throws {
        let (channel, _) = try Self.connection()
        channel.embeddedEventLoop.advanceTime(by: WebSocketConnectionHandler.pingInterval)
        #expect(try Self.outbound(channel).map(\.opcode) == [.ping])
        try channel.writeInbound(Self.client(.pong, ""))
        channel.embeddedEventLoop.advanceTime(by: WebSocketConnectionHandler.pingInterval)
        #expect(try Self.outbound(channel).map(\.opcode) == [.ping], "a connection that answered was not pinged again")
        #expect(channel.isActive)
        // No answer to this ping: the next period ends the connection.
        channel.embeddedEventLoop.advanceTime(by: WebSocketConnectionHandler.pingInterval)
        #expect(!channel.isActive, "a silent peer kept its connection")
    }

    @Test("a client's ping is answered with its payload")
    func pong() throws {
        let (channel, _) = try Self.connection()
        try channel.writeInbound(Self.client(.ping, "are you there"))
        let frames = try Self.outbound(channel)
        #expect(frames.map(\.opcode) == [.pong])
        #expect(frames.first.map { String(buffer: $0.unmaskedData) } == "are you there")
    }

    @Test("a client's close is answered with its code, then the socket closes")
    func clientCloses() throws {
        let (channel, _) = try Self.connection()
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(4001))
        let key: WebSocketMaskingKey = [9, 8, 7, 6]
        payload.webSocketMask(key)
        try channel.writeInbound(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: key, data: payload))
        let frames = try Self.outbound(channel)
        #expect(frames.compactMap(Self.closeCode) == [4001])
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test("a server close waits for the client's answer, and drops a client that never gives one")
    func serverCloses() throws {
        let (channel, handler) = try Self.connection()
        handler.sendClose(code: 4002, reason: String(repeating: "r", count: 500))
        let frames = try Self.outbound(channel)
        #expect(frames.compactMap(Self.closeCode) == [4002])
        #expect(frames.first.map { $0.unmaskedData.readableBytes } == 2 + 123, "the reason was not cut to 123 bytes")
        handler.sendClose(code: 4003, reason: "again")
        #expect(try Self.outbound(channel).isEmpty, "a second close frame was sent")
        // Messages after our close are not delivered anywhere, and the socket goes after the timeout.
        try channel.writeInbound(Self.client(.text, "late"))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: WebSocketConnectionHandler.closeTimeout)
        #expect(!channel.isActive)
    }

    @Test("messages sent before the connection is open wait, bounded in count and bytes (1008 beyond)")
    func boundedWhileOpening() throws {
        let (channel, _) = try Self.connection()
        for index in 0..<WebSocketConnectionHandler.maxWaitingMessages { try channel.writeInbound(Self.client(.text, "m\(index)")) }
        #expect(try Self.outbound(channel).isEmpty)
        try channel.writeInbound(Self.client(.text, "one too many"))
        #expect(try Self.outbound(channel).compactMap(Self.closeCode) == [1008])

        let (other, _) = try Self.connection(maxMessageBytes: 10)
        try other.writeInbound(Self.client(.binary, "123456"))
        try other.writeInbound(Self.client(.binary, "789012"))
        #expect(try Self.outbound(other).compactMap(Self.closeCode) == [1008], "waiting bytes past the limit were kept")
    }

    @Test("a reserved opcode or a fragment without a start is a protocol error (1002); an oversized message is 1009")
    func protocolErrors() throws {
        let (channel, _) = try Self.connection()
        try channel.writeInbound(WebSocketFrame(fin: true, opcode: WebSocketOpcode(encodedWebSocketOpcode: 0x3)!, data: ByteBuffer()))
        #expect(try Self.outbound(channel).compactMap(Self.closeCode) == [1002])

        let handler = WebSocketConnectionHandler(maxMessageBytes: 8)
        let aggregated = EmbeddedChannel()
        try aggregated.pipeline.syncOperations.addHandlers([
            NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 10, maxAccumulatedFrameSize: 8), handler,
        ])
        try aggregated.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try aggregated.writeInbound(Self.client(.text, "12345", fin: false))
        try aggregated.writeInbound(Self.client(.continuation, "67890", fin: true))
        #expect(try Self.outbound(aggregated).compactMap(Self.closeCode) == [1009])

        let (orphan, orphanHandler) = try Self.connection()
        _ = orphanHandler
        try orphan.pipeline.syncOperations.addHandler(
            NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 10, maxAccumulatedFrameSize: 8), position: .first)
        try orphan.writeInbound(Self.client(.continuation, "x"))
        #expect(try Self.outbound(orphan).compactMap(Self.closeCode) == [1002])
    }
}
