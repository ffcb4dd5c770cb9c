import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

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
/// Each connection has an ordered queue, written straight into the socket's channel on its
/// event loop (as encoded bytes, below NIO's frame encoder: a fan-out encodes its frame once): a send queues the frame and, when no write is scheduled for the connection
/// yet, schedules one. A fan-out to many connections (``send(_:to:)``) takes the lock once
/// and schedules one event-loop job per loop, not one task per connection, and each job
/// writes every frame that waits for its connections, then flushes each once. An idle
/// connection holds no task and no closure beyond its entry here.
///
/// The queue is bounded (``maxQueuedFrames``, ``maxQueuedBytes``): while the socket's own
/// buffer is full (the channel is not writable: the client is not reading), frames wait
/// here, and past either bound the connection is closed with 1008 and the reason "slow
/// consumer", and further sends fail.
final class WebSocketHub: Sendable {
    /// Frames a connection may have waiting to be written.
    static let maxQueuedFrames = 4_096
    /// Payload bytes a connection may have waiting to be written.
    static let maxQueuedBytes = 16 * 1024 * 1024
    /// How often a connection whose socket buffer is full is looked at again.
    static let blockedRetry: TimeAmount = .milliseconds(20)

    /// Where a connection's frames go: its socket's channel (whose event loop writes them,
    /// already encoded, through `writer` below the WebSocket frame encoder), and how a close
    /// is sent (the WebSocket handler's closing handshake).
    struct Transport: Sendable {
        /// The connection's channel (after the upgrade: WebSocket frames in, bytes out).
        let channel: any Channel
        /// Writes encoded frames into the channel below its WebSocket frame encoder.
        let writer: NIOLoopBound<WebSocketRawWriter>
        /// Sends a close frame with `code` and `reason` and closes the connection (called on
        /// the channel's event loop, after the frames queued before the close were written).
        let close: @Sendable (_ code: UInt16, _ reason: String) -> Void
    }

    /// A queued item: a frame already encoded (header and payload, shared by every
    /// connection of a fan-out), or a close.
    private enum Queued {
        case frame(ByteBuffer)
        case close(code: UInt16, reason: String)
    }

    private struct Connection {
        var pending: [Queued] = []
        var bytes = 0
        /// Past a bound, or a close was written: nothing more is queued.
        var refusing = false
        /// A write job is scheduled on the channel's event loop (or a retry, while blocked).
        var scheduled = false
        /// Drops the connection at once (the client is not reading, so a close frame may never leave).
        var abort: @Sendable () -> Void
        var transport: Transport?

        enum Outcome {
            case refused
            case overflowed
            case queued
            /// Queued, and no write job was scheduled yet: schedule one on this loop.
            case needsWrite(any EventLoop)
        }

        mutating func queue(_ frame: Queued, size: Int) -> Outcome {
            guard !refusing else { return .refused }
            if pending.count + 1 > WebSocketHub.maxQueuedFrames || bytes + size > WebSocketHub.maxQueuedBytes {
                refusing = true
                pending = []
                bytes = 0
                return .overflowed
            }
            pending.append(frame)
            bytes += size
            guard !scheduled, let transport else { return .queued }
            scheduled = true
            return .needsWrite(transport.channel.eventLoop)
        }

        enum Taken {
            case nothing
            /// The socket buffer is full: look again later (the job stays scheduled).
            case blocked(any EventLoop)
            /// Encoded frames to write (up to a close, which follows them when present).
            case frames(Transport, [ByteBuffer], close: (code: UInt16, reason: String)?)
        }

        /// Takes what waits to be written, on the channel's event loop.
        mutating func take() -> Taken {
            guard let transport, !pending.isEmpty else {
                scheduled = false
                return .nothing
            }
            guard transport.channel.isWritable else { return .blocked(transport.channel.eventLoop) }
            var frames: [ByteBuffer] = []
            frames.reserveCapacity(pending.count)
            var close: (code: UInt16, reason: String)?
            for item in pending {
                switch item {
                case .frame(let bytes): frames.append(bytes)
                case .close(let code, let reason): close = (code, reason)
                }
                if close != nil {
                    // Nothing is sent after a close.
                    refusing = true
                    break
                }
            }
            pending = []
            bytes = 0
            scheduled = false
            return .frames(transport, frames, close: close)
        }
    }

    private let state: NIOLockedValueBox<(next: UInt64, open: [UInt64: Connection])>

    /// A hub whose ids start at `firstID + 1`.
    init(firstID: UInt64 = 0) {
        state = NIOLockedValueBox((firstID + 1, [:]))
    }

    /// Registers a new connection and returns its id; `transport` writes its frames (nil
    /// keeps them queued, for tests), `abort` closes the transport when the queue overflows.
    func open(abort: @escaping @Sendable () -> Void = {}, transport: Transport? = nil) -> UInt64 {
        state.withLockedValue { state -> UInt64 in
            let id = state.next
            state.next += 1
            state.open[id] = Connection(abort: abort, transport: transport)
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
        var queued = 0
        withUnsafePointer(to: id) { queued = send(frame, to: UnsafeBufferPointer(start: $0, count: 1)) }
        return queued == 1
    }

    /// Queues one frame for each of `ids` (the buffer is shared, not copied); returns how
    /// many took it. Ids of other kernels or closed connections are skipped.
    func send(_ frame: WebSocketOutbound, to ids: UnsafeBufferPointer<UInt64>) -> Int {
        let size = frame.size
        // Encoded once for all of them: each connection writes the same bytes.
        let item: Queued =
            switch frame {
            case .text(let payload): .frame(Self.encode(opcode: .text, payload))
            case .binary(let payload): .frame(Self.encode(opcode: .binary, payload))
            case .close(let code, let reason): .close(code: code, reason: reason)
            }
        var queued = 0
        var overflowed: [@Sendable () -> Void] = []
        // Connections that need a write job, by event loop.
        var jobs: [ObjectIdentifier: (loop: any EventLoop, ids: [UInt64])] = [:]
        state.withLockedValue { state in
            for id in ids {
                guard let index = state.open.index(forKey: id) else { continue }
                switch state.open.values[index].queue(item, size: size) {
                case .refused: break
                case .overflowed: overflowed.append(state.open.values[index].abort)
                case .queued: queued += 1
                case .needsWrite(let loop):
                    queued += 1
                    jobs[ObjectIdentifier(loop), default: (loop, [])].ids.append(id)
                }
            }
        }
        for abort in overflowed { abort() }
        for job in jobs.values {
            let ids = job.ids
            job.loop.execute { self.write(ids) }
        }
        return queued
    }

    /// On an event loop: writes what waits for each of `ids` (all on this loop) into its
    /// channel, up to a close and while the socket takes more, then flushes each once.
    private func write(_ ids: [UInt64]) {
        var batches: [(transport: Transport, frames: [ByteBuffer], close: (code: UInt16, reason: String)?)] = []
        var blocked: [(loop: any EventLoop, id: UInt64)] = []
        state.withLockedValue { state in
            for id in ids {
                guard let index = state.open.index(forKey: id) else { continue }
                switch state.open.values[index].take() {
                case .nothing: break
                case .blocked(let loop): blocked.append((loop, id))
                case .frames(let transport, let frames, let close): batches.append((transport, frames, close))
                }
            }
        }
        for (transport, frames, close) in batches {
            if !frames.isEmpty {
                let writer = transport.writer.value
                for frame in frames { writer.write(frame) }
                writer.flush()
            }
            if let close { transport.close(close.code, close.reason) }
        }
        for (loop, id) in blocked {
            loop.scheduleTask(in: Self.blockedRetry) { self.write([id]) }
        }
    }

    /// A server frame (final, unmasked) with `opcode` and `payload`, as RFC 6455 section 5.2
    /// lays it out: written once per send and shared by every connection it goes to.
    static func encode(opcode: WebSocketOpcode, _ payload: ByteBuffer) -> ByteBuffer {
        let length = payload.readableBytes
        var frame = ByteBuffer()
        frame.reserveCapacity(length + 10)
        // FIN set, no extension bits, then the opcode.
        frame.writeInteger(0x80 | UInt8(webSocketOpcode: opcode))
        if length < 126 {
            frame.writeInteger(UInt8(length))
        } else if length <= Int(UInt16.max) {
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(length))
        } else {
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(length))
        }
        frame.writeImmutableBuffer(payload)
        return frame
    }

    /// Closes every connection with `code` and `reason` (a kernel stopping), waits up to
    /// `grace` for them to end (each ends with its plugin's ws_close), then drops the rest.
    func closeAll(code: UInt16, reason: String, grace: Duration = .seconds(5)) async {
        let (ids, aborts) = state.withLockedValue { state in (Array(state.open.keys), state.open.values.map(\.abort)) }
        guard !ids.isEmpty else { return }
        _ = ids.withUnsafeBufferPointer { send(.close(code: code, reason: reason), to: $0) }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while count > 0 && clock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        guard count > 0 else { return }
        for abort in aborts { abort() }
        let last = clock.now + .seconds(1)
        while count > 0 && clock.now < last { try? await Task.sleep(for: .milliseconds(20)) }
    }

    /// Frames and bytes waiting for `id` (for tests and diagnostics).
    func queued(_ id: UInt64) -> (frames: Int, bytes: Int)? {
        state.withLockedValue { state in state.open[id].map { ($0.pending.count, $0.bytes) } }
    }

    /// Number of open connections.
    var count: Int { state.withLockedValue { $0.open.count } }
}
