import NIOConcurrencyHelpers
import NIOCore

/// A frame or a close request queued for one WebSocket connection. The payload is a
/// `ByteBuffer` so one broadcast frame is shared by every connection's queue, not copied.
enum WebSocketOutbound: Sendable {
    case text(ByteBuffer)
    case binary(ByteBuffer)
    case close(code: UInt16, reason: String)

    /// Payload bytes the frame holds in the queue.
    var size: Int {
        switch self {
        case .text(let bytes), .binary(let bytes): bytes.readableBytes
        case .close(_, let reason): reason.utf8.count
        }
    }
}

/// One kernel's open WebSocket connections by id, so plugins can send from any thread.
/// Ids carry the kernel's slot in their top bits (``HostContext``).
///
/// Each connection drains its own ordered queue on its handler task, so frames to one
/// connection leave in the order the plugin sent them. The queue is bounded
/// (``maxQueuedFrames``, ``maxQueuedBytes``): a client that does not read while a plugin keeps
/// sending would otherwise grow the kernel without limit. Past either bound the connection
/// is closed with 1008 and the reason "slow consumer", and further sends fail.
final class WebSocketHub: Sendable {
    /// Frames a connection may have waiting to be written.
    static let maxQueuedFrames = 4_096
    /// Payload bytes a connection may have waiting to be written.
    static let maxQueuedBytes = 16 * 1024 * 1024

    private struct Connection {
        var continuation: AsyncStream<WebSocketOutbound>.Continuation
        var frames = 0
        var bytes = 0
        var overflowed = false
        /// Drops the connection at once (the client is not reading, so a close frame may never leave).
        var abort: @Sendable () -> Void
    }

    private let state: NIOLockedValueBox<(next: UInt64, open: [UInt64: Connection])>

    /// A hub whose ids start at `firstID + 1`.
    init(firstID: UInt64 = 0) {
        state = NIOLockedValueBox((firstID + 1, [:]))
    }

    /// Registers a new connection and returns its id and outbound queue; `abort` closes the
    /// transport when the connection overflows its queue.
    func open(abort: @escaping @Sendable () -> Void = {}) -> (id: UInt64, outbound: AsyncStream<WebSocketOutbound>) {
        let (stream, continuation) = AsyncStream<WebSocketOutbound>.makeStream(bufferingPolicy: .unbounded)
        let id = state.withLockedValue { state -> UInt64 in
            let id = state.next
            state.next += 1
            state.open[id] = Connection(continuation: continuation, abort: abort)
            return id
        }
        return (id, stream)
    }

    /// Forgets a connection and ends its queue.
    func remove(_ id: UInt64) {
        state.withLockedValue { $0.open.removeValue(forKey: id) }?.continuation.finish()
    }

    /// Queues a frame; false when the connection is gone or its queue is full (which closes it).
    @discardableResult
    func send(_ id: UInt64, _ frame: WebSocketOutbound) -> Bool {
        let size = frame.size
        enum Outcome {
            case gone
            case queued(AsyncStream<WebSocketOutbound>.Continuation)
            case overflow(Connection)
        }
        let outcome = state.withLockedValue { state -> Outcome in
            guard var connection = state.open[id], !connection.overflowed else { return .gone }
            if connection.frames + 1 > Self.maxQueuedFrames || connection.bytes + size > Self.maxQueuedBytes {
                connection.overflowed = true
                state.open[id] = connection
                return .overflow(connection)
            }
            connection.frames += 1
            connection.bytes += size
            state.open[id] = connection
            return .queued(connection.continuation)
        }
        switch outcome {
        case .gone: return false
        case .queued(let continuation):
            if case .enqueued = continuation.yield(frame) { return true }
            return false
        case .overflow(let connection):
            let reason = "slow consumer: more than \(Self.maxQueuedFrames) frames or \(Self.maxQueuedBytes / 1024 / 1024) MiB waiting to be read"
            connection.continuation.yield(.close(code: 1008, reason: reason))
            connection.continuation.finish()
            connection.abort()
            return false
        }
    }

    /// Records that a queued frame of `size` bytes was written (or dropped), freeing its room.
    func written(_ id: UInt64, size: Int) {
        state.withLockedValue { state in
            guard var connection = state.open[id] else { return }
            connection.frames = max(0, connection.frames - 1)
            connection.bytes = max(0, connection.bytes - size)
            state.open[id] = connection
        }
    }

    /// Frames and bytes waiting for `id` (for tests and diagnostics).
    func queued(_ id: UInt64) -> (frames: Int, bytes: Int)? {
        state.withLockedValue { state in state.open[id].map { ($0.frames, $0.bytes) } }
    }

    /// Number of open connections.
    var count: Int { state.withLockedValue { $0.open.count } }
}
