import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import Testing
@testable import Kernel

@Suite("WebSocket upgrade routed to plugins", .serialized, .timeLimit(.minutes(3)))
struct WebSocketTests {
    /// Connects, sends `messages`, returns what came back (until as many replies arrived)
    /// and the close frame, if the server closed.
    func exchange(_ url: String, send messages: [WebSocketMessageToSend]) async throws -> (replies: [String], close: WebSocketCloseFrame?) {
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

    enum WebSocketMessageToSend { case text(String), binary([UInt8]) }

    final class ReplyBox: @unchecked Sendable {
        private var items: [String] = []
        private let lock = NSLock()
        func append(_ item: String) { lock.withLock { items.append(item) } }
        var all: [String] { lock.withLock { items } }
        var count: Int { lock.withLock { items.count } }
    }

    @Test("the C plugin and the Swift plugin echo text and binary frames in order")
    func echo() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let base = kernel.url.replacingOccurrences(of: "http://", with: "ws://")
        let messages: [WebSocketMessageToSend] = (0..<50).map { .text("message \($0)") } + [.binary([104, 105])]
        let expected = (0..<50).map { "message \($0)" } + ["binary:hi"]
        let c = try await exchange(base + "/p/demo/echo-c/socket", send: messages)
        #expect(c.replies == expected)
        let swift = try await exchange(base + "/p/demo/echo-swift/socket", send: messages)
        #expect(swift.replies == expected)
        await kernel.stop()
    }

    @Test("refusals close the connection with a reason: unknown portal, disabled plugin, plugin refusal")
    func refusals() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let base = kernel.url.replacingOccurrences(of: "http://", with: "ws://")
        let ghost = try await exchange(base + "/p/ghost/echo-c/socket", send: [])
        #expect(ghost.close?.closeCode == .policyViolation)
        #expect(ghost.close?.reason?.contains("portal \"ghost\" does not exist") == true)
        let disabled = try await exchange(base + "/p/conly/echo-swift/socket", send: [])
        #expect(disabled.close?.reason?.contains("not enabled for portal \"conly\"") == true)
        let refused = try await exchange(base + "/p/demo/echo-swift/socket?refuse=1", send: [])
        #expect(refused.close?.closeCode == .policyViolation)
        #expect(refused.close?.reason?.contains("refused as asked") == true)
        #expect(try await kernel.request("/v1/system/status").status == 200)
        await kernel.stop()
    }
}
