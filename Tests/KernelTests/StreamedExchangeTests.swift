import Foundation
import Hummingbird
import MeltyPluginABI
import NIOCore
import Synchronization
import Testing

@testable import Kernel

/// ABI 1.7's streamed exchanges without a plugin: reads one at a time, the body limit, the
/// response events and the rules of start, write and end.
@Suite("Streamed request and response bodies (ABI 1.7)")
struct StreamedExchangeTests {
    /// Reads one chunk through the completion API.
    private func read(_ exchange: StreamedExchange) async -> (mb_status, [UInt8]) {
        await withCheckedContinuation { continuation in
            let status = exchange.read { status, bytes in continuation.resume(returning: (status, bytes)) }
            if status != MB_OK { continuation.resume(returning: (status, [])) }
        }
    }

    @Test("the body arrives in chunks, at most 1 MiB each, then an empty chunk at its end")
    func readsTheBody() async {
        let body = [UInt8](repeating: 7, count: StreamedExchange.maxChunk + 10)
        let exchange = StreamedExchange(token: 1, body: RequestBody(buffer: ByteBuffer(bytes: body)), bodyLimit: 4 << 20)
        var received: [UInt8] = []
        var chunks = 0
        while true {
            let (status, chunk) = await read(exchange)
            #expect(status == MB_OK)
            if chunk.isEmpty { break }
            #expect(chunk.count <= StreamedExchange.maxChunk)
            received += chunk
            chunks += 1
        }
        #expect(received == body)
        #expect(chunks == 2)
        #expect(await read(exchange).1.isEmpty)  // after the end: the end again
    }

    @Test("a body over the kernel's limit is refused with a message")
    func refusesTooLargeBodies() async {
        let exchange = StreamedExchange(token: 2, body: RequestBody(buffer: ByteBuffer(repeating: 1, count: 100)), bodyLimit: 10)
        let (status, message) = await read(exchange)
        #expect(status == MB_ERR_INVALID_ARGUMENT)
        #expect(String(decoding: message, as: UTF8.self).contains("limit of 10 bytes"))
    }

    @Test("start once, write after start, end once; chunks written after the client left complete unavailable")
    func responseRules() async throws {
        let exchange = StreamedExchange(token: 3, body: RequestBody(buffer: ByteBuffer()), bodyLimit: 10)
        #expect(exchange.write(ByteBuffer(string: "early"), written: nil) == MB_ERR_INVALID_ARGUMENT)
        #expect(exchange.end(aborted: false) == MB_ERR_NOT_FOUND)
        let stream = try #require(exchange.start())
        #expect(exchange.start() == nil)
        #expect(exchange.write(ByteBuffer(string: "one"), written: nil) == MB_OK)
        #expect(exchange.end(aborted: false) == MB_OK)
        #expect(exchange.end(aborted: false) == MB_ERR_NOT_FOUND)
        #expect(exchange.write(ByteBuffer(string: "late"), written: nil) == MB_ERR_NOT_FOUND)
        var events: [String] = []
        for await event in stream {
            switch event {
            case .chunk(let buffer, _): events.append(String(buffer: buffer))
            case .end: events.append("end")
            case .abort: events.append("abort")
            }
        }
        #expect(events == ["one", "end"])

        let closed = StreamedExchange(token: 4, body: RequestBody(buffer: ByteBuffer()), bodyLimit: 10)
        _ = closed.start()
        closed.close()
        let outcome = await withCheckedContinuation { continuation in
            let status = closed.write(ByteBuffer(string: "x")) { continuation.resume(returning: $0) }
            if status != MB_OK { continuation.resume(returning: status) }
        }
        #expect(outcome == MB_ERR_NOT_FOUND || outcome == MB_ERR_UNAVAILABLE)
    }

    @Test("one read at a time")
    func oneReadAtATime() async {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let exchange = StreamedExchange(token: 5, body: RequestBody(asyncSequence: stream), bodyLimit: 100)
        let first = Mutex<(mb_status, [UInt8])?>(nil)
        #expect(exchange.read { status, bytes in first.withLock { $0 = (status, bytes) } } == MB_OK)
        #expect(exchange.read { _, _ in } == MB_ERR_REFUSED)
        continuation.yield(ByteBuffer(string: "hello"))
        continuation.finish()
        while first.withLock({ $0 == nil }) { try? await Task.sleep(for: .milliseconds(5)) }
        #expect(first.withLock { $0?.1 } == Array("hello".utf8))
    }
}
