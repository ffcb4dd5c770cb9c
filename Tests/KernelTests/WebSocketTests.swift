import Foundation
import HummingbirdWSClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket
import Testing

@testable import Kernel

@Suite("WebSocket upgrade routed to plugins", .serialized, .timeLimit(.minutes(3)))
struct WebSocketTests {
    /// Connects, sends `messages`, returns what came back (until as many replies arrived)
    /// and the close frame, if the server closed.
    static func exchange(_ url: String, send messages: [WebSocketMessageToSend]) async throws -> (replies: [String], close: WebSocketCloseFrame?) {
        let replies = ReplyBox()
        let close = try await WebSocketClient.connect(url: url, logger: Logger(label: "ws-test")) { inbound, outbound, _ in
            for message in messages {
                switch message {
                case .text(let text): try await outbound.write(.text(text))
                case .binary(let bytes): try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
                }
            }
            guard !messages.isEmpty else {
                for try await _ in inbound.messages(maxSize: 1 << 20) {}
                return
            }
            for try await message in inbound.messages(maxSize: 1 << 20) {
                switch message {
                case .text(let text): replies.append(text)
                case .binary(let buffer): replies.append("binary:" + String(buffer: buffer))
                }
                if replies.count == messages.count { break }
            }
            try await outbound.close(.normalClosure, reason: nil)
        }
        return (replies.all, close)
    }

    enum WebSocketMessageToSend {
        case text(String)
        case binary([UInt8])
    }

    /// Resumes a continuation once, whichever of two racers comes first.
    final class ResumeOnce<T: Sendable>: Sendable {
        private let continuation: NIOLockedValueBox<CheckedContinuation<T, Never>?>
        init(_ continuation: CheckedContinuation<T, Never>) { self.continuation = NIOLockedValueBox(continuation) }
        func resume(_ value: T) {
            let pending = continuation.withLockedValue { continuation -> CheckedContinuation<T, Never>? in
                defer { continuation = nil }
                return continuation
            }
            pending?.resume(returning: value)
        }
    }

    /// `body`'s result, or nil after `seconds`, without waiting for a body that ignores
    /// cancellation (a WebSocket client stuck in its handshake does).
    static func within<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async -> Result<T, Error>? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, Error>?, Never>) in
            let once = ResumeOnce(continuation)
            Task {
                do { once.resume(.success(try await body())) } catch { once.resume(.failure(error)) }
            }
            Task {
                try? await Task.sleep(nanoseconds: UInt64(seconds * 1_000_000_000))
                once.resume(nil)
            }
        }
    }

    /// The close frame a refused connection gets. Under a loaded full-suite run the client
    /// has, rarely, never seen the server's close (the handshake hung with both sides idle;
    /// not reproduced alone): an attempt that gets no answer in 20 s is retried, twice at most,
    /// and says so; every attempt that answers is checked by the caller.
    static func refusalClose(_ url: String) async throws -> WebSocketCloseFrame? {
        for attempt in 1...3 {
            if let result = await within(20, { try await exchange(url, send: []) }) { return try result.get().close }
            print("WebSocketTests: no answer from \(url) within 20 s (attempt \(attempt) of 3)")
        }
        Issue.record("no close frame from \(url) in 3 attempts of 20 s")
        return nil
    }

    final class ReplyBox: Sendable {
        private let items = NIOLockedValueBox<[String]>([])
        func append(_ item: String) { items.withLockedValue { $0.append(item) } }
        var all: [String] { items.withLockedValue { $0 } }
        var count: Int { items.withLockedValue { $0.count } }
    }

    @Test("the C plugin and the Swift plugin echo text and binary frames in order")
    func echo() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let base = kernel.url.replacingOccurrences(of: "http://", with: "ws://")
        let messages: [WebSocketMessageToSend] = (0..<50).map { .text("message \($0)") } + [.binary([104, 105])]
        let expected = (0..<50).map { "message \($0)" } + ["binary:hi"]
        let c = try await Self.exchange(base + "/p/demo/echo-c/socket", send: messages)
        #expect(c.replies == expected)
        let swift = try await Self.exchange(base + "/p/demo/echo-swift/socket", send: messages)
        #expect(swift.replies == expected)
        await kernel.stop()
    }

    @Test("refusals close the connection with a reason: unknown portal, disabled plugin, plugin refusal")
    func refusals() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let base = kernel.url.replacingOccurrences(of: "http://", with: "ws://")
        let ghost = try await Self.refusalClose(base + "/p/ghost/echo-c/socket")
        #expect(ghost?.closeCode == .policyViolation)
        #expect(ghost?.reason?.contains("portal \"ghost\" does not exist") == true)
        let disabled = try await Self.refusalClose(base + "/p/conly/echo-swift/socket")
        #expect(disabled?.reason?.contains("not enabled for portal \"conly\"") == true)
        let refused = try await Self.refusalClose(base + "/p/demo/echo-swift/socket?refuse=1")
        #expect(refused?.closeCode == .policyViolation)
        #expect(refused?.reason?.contains("refused as asked") == true)
        #expect(try await kernel.request("/v1/system/status").status == 200)
        // A stuck attempt above may hold a connection open: do not wait on it for ever.
        _ = await Self.within(30) { await kernel.stop() }
    }

    /// Connects, writes `frame` as is (the client masks it), returns the server's close frame.
    static func closeAfter(_ url: String, frame: WebSocketFrame) async throws -> WebSocketCloseFrame? {
        try await WebSocketClient.connect(url: url, logger: Logger(label: "ws-test")) { inbound, outbound, _ in
            try await outbound.write(.custom(frame))
            for try await _ in inbound.messages(maxSize: 1 << 20) {}
        }
    }

    @Test("text that is not UTF-8 closes with 1007, a message over the body limit with 1009; the kernel serves on")
    func invalidMessages() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let base = kernel.url.replacingOccurrences(of: "http://", with: "ws://")
        let invalid = try await Self.closeAfter(
            base + "/p/demo/echo-swift/socket", frame: WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: [0x68, 0xC3, 0x28, 0xFF])))
        #expect(invalid?.closeCode == .dataInconsistentWithMessage)
        #expect(invalid?.reason?.contains("UTF-8") == true)
        let huge = try await Self.closeAfter(
            base + "/p/demo/echo-c/socket",
            frame: WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(repeating: 1, count: KernelRequestContext.defaultBodyLimit + 1)))
        #expect(huge?.closeCode == .messageTooLarge, "an oversized message did not close the connection with 1009")
        // Both echo plugins still answer.
        let c = try await Self.exchange(base + "/p/demo/echo-c/socket", send: [.text("still here")])
        #expect(c.replies == ["still here"])
        _ = await Self.within(30) { await kernel.stop() }
    }

    @Test("a stopping kernel closes its open WebSocket connections with 1001 before its plugins stop")
    func shutdownClosesSockets() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let base = kernel.url.replacingOccurrences(of: "http://", with: "ws://")
        let opened = ReplyBox()
        let client = Task {
            try await WebSocketClient.connect(url: base + "/p/demo/echo-c/socket", logger: Logger(label: "ws-test")) { inbound, outbound, _ in
                try await outbound.write(.text("ready"))
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    if case .text(let text) = message { opened.append(text) }
                }
            }
        }
        for _ in 0..<500 where opened.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(opened.all == ["ready"])
        _ = await Self.within(30) { await kernel.stop() }
        let close = try await client.value
        #expect(close?.closeCode == .goingAway)
        #expect(close?.reason == "the server is shutting down")
    }
}
