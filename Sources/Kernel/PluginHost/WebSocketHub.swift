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
/// Each connection has an ordered queue; a writer task starts when a frame is queued and
/// ends when the queue is empty, so frames to one connection leave in the order the plugin
/// sent them and an idle connection holds no task (tens of thousands of idle sockets cost
/// no task each). The queue is bounded (``maxQueuedFrames``, ``maxQueuedBytes``): a client
/// that does not read while a plugin keeps sending would otherwise grow the kernel without
/// limit. Past either bound the connection is closed with 1008 and the reason "slow
/// consumer", and further sends fail.
final class WebSocketHub: Sendable {
    /// Frames a connection may have waiting to be written.
    static let maxQueuedFrames = 4_096
    /// Payload bytes a connection may have waiting to be written.
    static let maxQueuedBytes = 16 * 1024 * 1024

    /// Writes one frame to the client; false when the connection can take no more.
    typealias Writer = @Sendable (WebSocketOutbound) async -> Bool

    private struct Connection {
        var pending: [WebSocketOutbound] = []
        var head = 0
        var frames = 0
        var bytes = 0
        var overflowed = false
        var writing = false
        /// Drops the connection at once (the client is not reading, so a close frame may never leave).
        var abort: @Sendable () -> Void
        var writer: Writer?
    }

    private let state: NIOLockedValueBox<(next: UInt64, open: [UInt64: Connection])>

    /// A hub whose ids start at `firstID + 1`.
    init(firstID: UInt64 = 0) {
        state = NIOLockedValueBox((firstID + 1, [:]))
    }

    /// Registers a new connection and returns its id; `writer` writes its frames (nil keeps
    /// them queued, for tests), `abort` closes the transport when the queue overflows.
    func open(abort: @escaping @Sendable () -> Void = {}, writer: Writer? = nil) -> UInt64 {
        state.withLockedValue { state -> UInt64 in
            let id = state.next
            state.next += 1
            state.open[id] = Connection(abort: abort, writer: writer)
            return id
        }
    }

    /// Forgets a connection; frames still queued are dropped.
    func remove(_ id: UInt64) {
        _ = state.withLockedValue { $0.open.removeValue(forKey: id) }
    }

    /// Queues a frame; false when the connection is gone or its queue is full (which closes it).
    @discardableResult
    func send(_ id: UInt64, _ frame: WebSocketOutbound) -> Bool {
        let size = frame.size
        enum Outcome {
            case gone
            case queued
            case start(Writer)
            case overflow(@Sendable () -> Void)
        }
        let outcome = state.withLockedValue { state -> Outcome in
            guard var connection = state.open[id], !connection.overflowed else { return .gone }
            if connection.frames + 1 > Self.maxQueuedFrames || connection.bytes + size > Self.maxQueuedBytes {
                connection.overflowed = true
                state.open[id] = connection
                return .overflow(connection.abort)
            }
            connection.frames += 1
            connection.bytes += size
            connection.pending.append(frame)
            var outcome = Outcome.queued
            if !connection.writing, let writer = connection.writer {
                connection.writing = true
                outcome = .start(writer)
            }
            state.open[id] = connection
            return outcome
        }
        switch outcome {
        case .gone: return false
        case .queued: return true
        case .start(let writer):
            Task { await self.drain(id, writer) }
            return true
        case .overflow(let abort):
            abort()
            return false
        }
    }

    /// Writes the connection's frames in order until its queue is empty or a write fails.
    private func drain(_ id: UInt64, _ writer: Writer) async {
        while let frame = next(id) {
            let written = await writer(frame)
            self.written(id, size: frame.size)
            if !written {
                remove(id)
                return
            }
        }
    }

    /// The connection's next queued frame; nil (and its writer stops) when none is left.
    private func next(_ id: UInt64) -> WebSocketOutbound? {
        state.withLockedValue { state in
            guard var connection = state.open[id] else { return nil }
            guard connection.head < connection.pending.count else {
                connection.writing = false
                connection.pending.removeAll()
                connection.head = 0
                state.open[id] = connection
                return nil
            }
            let frame = connection.pending[connection.head]
            connection.head += 1
            if connection.head > 64 && connection.head * 2 > connection.pending.count {
                connection.pending.removeFirst(connection.head)
                connection.head = 0
            }
            state.open[id] = connection
            return frame
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
