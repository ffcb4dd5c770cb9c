import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import Kernel

/// The kernel's WebSocket send queues: frames written into the channel on its event loop,
/// in order, one job per loop for a fan-out; bounded while the client does not read.
@Suite("WebSocket hub: event-loop writes, fan-out, slow consumers, close")
struct WebSocketHubTests {
    /// A connection on an embedded channel (with the raw writer the gateway puts below the
    /// frame encoder); `closes` records close requests.
    private static func connection(
        _ hub: WebSocketHub, closes: NIOLockedValueBox<[(UInt16, String)]> = .init([]), aborted: NIOLockedValueBox<Bool> = .init(false)
    ) throws -> (id: UInt64, channel: EmbeddedChannel) {
        let channel = EmbeddedChannel()
        let writer = WebSocketRawWriter()
        try channel.pipeline.syncOperations.addHandler(writer)
        let transport = WebSocketHub.Transport(channel: channel, writer: NIOLoopBound(writer, eventLoop: channel.eventLoop)) { code, reason in
            closes.withLockedValue { $0.append((code, reason)) }
        }
        return (hub.open(abort: { aborted.withLockedValue { $0 = true } }, transport: transport), channel)
    }

    /// The frames written, decoded with NIO's own WebSocket frame decoder.
    private static func written(_ channel: EmbeddedChannel) throws -> [(WebSocketOpcode, String)] {
        var bytes = ByteBuffer()
        while var chunk = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&chunk) }
        let decoder = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 24)))
        try decoder.writeInbound(bytes)
        var frames: [(WebSocketOpcode, String)] = []
        while let frame = try decoder.readInbound(as: WebSocketFrame.self) {
            #expect(frame.fin)
            #expect(frame.maskKey == nil, "a server frame was masked")
            frames.append((frame.opcode, String(buffer: frame.unmaskedData)))
        }
        #expect(try decoder.finish().isClean)
        return frames
    }

    @Test("frames to one connection leave in order, text and binary, only once the event loop runs")
    func ordered() throws {
        let hub = WebSocketHub()
        let (id, channel) = try Self.connection(hub)
        #expect(hub.send(id, .text(ByteBuffer(string: "one"))))
        #expect(hub.send(id, .binary(ByteBuffer(string: "two"))))
        #expect(hub.send(id, .text(ByteBuffer(string: "three"))))
        #expect(try Self.written(channel).isEmpty, "written before the event loop ran the job")
        #expect(hub.queued(id)?.frames == 3)
        channel.embeddedEventLoop.run()
        let frames = try Self.written(channel)
        #expect(frames.map(\.1) == ["one", "two", "three"])
        #expect(frames.map(\.0) == [.text, .binary, .text])
        #expect(hub.queued(id)?.frames == 0 && hub.queued(id)?.bytes == 0)
        // Later sends schedule a new job.
        #expect(hub.send(id, .text(ByteBuffer(string: "four"))))
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel).map(\.1) == ["four"])
    }

    @Test("a fan-out queues one shared frame for every known id and skips the others")
    func fanOut() throws {
        let hub = WebSocketHub()
        let a = try Self.connection(hub)
        let b = try Self.connection(hub)
        let ids: [UInt64] = [a.id, 999_999, b.id]
        let queued = ids.withUnsafeBufferPointer { hub.send(.text(ByteBuffer(string: "all")), to: $0) }
        #expect(queued == 2)
        a.channel.embeddedEventLoop.run()
        b.channel.embeddedEventLoop.run()
        #expect(try Self.written(a.channel).map(\.1) == ["all"])
        #expect(try Self.written(b.channel).map(\.1) == ["all"])
        hub.remove(b.id)
        #expect(!hub.send(b.id, .text(ByteBuffer(string: "gone"))))
    }

    @Test("while the socket takes no more, frames wait in the queue and leave when it does")
    func blockedThenWritable() throws {
        let hub = WebSocketHub()
        let (id, channel) = try Self.connection(hub)
        channel.isWritable = false
        for text in ["a", "b"] { #expect(hub.send(id, .text(ByteBuffer(string: text)))) }
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel).isEmpty)
        #expect(hub.queued(id)?.frames == 2)
        channel.isWritable = true
        channel.embeddedEventLoop.advanceTime(by: WebSocketHub.blockedRetry)
        #expect(try Self.written(channel).map(\.1) == ["a", "b"])
    }

    @Test("a client that does not read is cut off at the queue's bound, and later sends fail")
    func slowConsumer() throws {
        let hub = WebSocketHub()
        let aborted = NIOLockedValueBox(false)
        let (id, channel) = try Self.connection(hub, aborted: aborted)
        channel.isWritable = false
        for _ in 0..<WebSocketHub.maxQueuedFrames { #expect(hub.send(id, .text(ByteBuffer(string: "x")))) }
        #expect(!aborted.withLockedValue { $0 })
        #expect(!hub.send(id, .text(ByteBuffer(string: "one too many"))))
        #expect(aborted.withLockedValue { $0 })
        #expect(!hub.send(id, .text(ByteBuffer(string: "after"))))
        // Bytes count too: one frame over 16 MiB is refused on an empty queue.
        let (other, _) = try Self.connection(hub)
        #expect(!hub.send(other, .binary(ByteBuffer(repeating: 0, count: WebSocketHub.maxQueuedBytes + 1))))
    }

    @Test("a close follows the frames queued before it; nothing queued after it is written")
    func closeAfterFrames() throws {
        let hub = WebSocketHub()
        let closes = NIOLockedValueBox<[(UInt16, String)]>([])
        let (id, channel) = try Self.connection(hub, closes: closes)
        #expect(hub.send(id, .text(ByteBuffer(string: "last words"))))
        #expect(hub.send(id, .close(code: 4000, reason: "bye")))
        #expect(hub.send(id, .text(ByteBuffer(string: "too late"))))
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel).map(\.1) == ["last words"])
        #expect(closes.withLockedValue { $0.map(\.0) } == [4000])
        #expect(closes.withLockedValue { $0.map(\.1) } == ["bye"])
        #expect(!hub.send(id, .text(ByteBuffer(string: "after close"))))
    }

    @Test("frames of every length class decode as NIO's decoder reads them (7-bit, 16-bit, 64-bit lengths)")
    func lengths() throws {
        let hub = WebSocketHub()
        let (id, channel) = try Self.connection(hub)
        let sizes = [0, 125, 126, 65_535, 65_536, 200_000]
        for size in sizes { #expect(hub.send(id, .binary(ByteBuffer(repeating: UInt8(ascii: "x"), count: size)))) }
        channel.embeddedEventLoop.run()
        let frames = try Self.written(channel)
        #expect(frames.map(\.1.utf8.count) == sizes)
        #expect(frames.allSatisfy { $0.0 == .binary })
    }
}
