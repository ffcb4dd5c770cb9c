import NIOConcurrencyHelpers

/// A frame or a close request queued for one WebSocket connection.
enum WebSocketOutbound: Sendable {
    case text([UInt8])
    case binary([UInt8])
    case close(code: UInt16, reason: String)
}

/// Open WebSocket connections by id, so plugins can send from any thread.
///
/// Each connection drains its own ordered queue on its handler task, so frames to one
/// connection leave in the order the plugin sent them.
final class WebSocketHub: @unchecked Sendable {
    static let shared = WebSocketHub()

    private let state = NIOLockedValueBox<(next: UInt64, open: [UInt64: AsyncStream<WebSocketOutbound>.Continuation])>((1, [:]))

    /// Registers a new connection and returns its id and outbound queue.
    func open() -> (id: UInt64, outbound: AsyncStream<WebSocketOutbound>) {
        let (stream, continuation) = AsyncStream<WebSocketOutbound>.makeStream(bufferingPolicy: .unbounded)
        let id = state.withLockedValue { state -> UInt64 in
            let id = state.next
            state.next += 1
            state.open[id] = continuation
            return id
        }
        return (id, stream)
    }

    /// Forgets a connection and ends its queue.
    func remove(_ id: UInt64) {
        state.withLockedValue { $0.open.removeValue(forKey: id) }?.finish()
    }

    /// Queues a frame; false when the connection is gone.
    @discardableResult
    func send(_ id: UInt64, _ frame: WebSocketOutbound) -> Bool {
        guard let continuation = state.withLockedValue({ $0.open[id] }) else { return false }
        if case .enqueued = continuation.yield(frame) { return true }
        return false
    }

    /// Number of open connections.
    var count: Int { state.withLockedValue { $0.open.count } }
}
