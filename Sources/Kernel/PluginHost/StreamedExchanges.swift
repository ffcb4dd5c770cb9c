import Foundation
import Hummingbird
import MeltyPluginABI
import NIOCore
import Synchronization

/// One kernel's requests on plugins' streaming route prefixes (ABI 1.7), by token: the
/// request body the plugin pulls chunk by chunk (`request_body_read`) and, once the plugin
/// starts its answer (`respond_start`), the response chunks on their way to the client.
///
/// An exchange lives from dispatch until the response ended (or was answered whole with
/// `respond`) and the client's request is over; the gateway removes it.
final class StreamedExchanges: Sendable {
    private let exchanges = Mutex<[UInt64: StreamedExchange]>([:])

    /// Registers the exchange of `token` (dispatched, no answer yet).
    func register(_ exchange: StreamedExchange) {
        exchanges.withLock { $0[exchange.token] = exchange }
    }

    /// The exchange of `token`, while it is registered.
    func exchange(_ token: UInt64) -> StreamedExchange? {
        exchanges.withLock { $0[token] }
    }

    /// Forgets `token` and fails what still waits on it (a pending read, queued chunks).
    func remove(_ token: UInt64) {
        let removed = exchanges.withLock { $0.removeValue(forKey: token) }
        removed?.close()
    }

}

/// What a streamed response carries from the plugin to the client's connection.
enum StreamedResponseEvent: Sendable {
    /// A chunk and the plugin's `written` completion (nil: fire and forget).
    case chunk(ByteBuffer, (@Sendable (mb_status) -> Void)?)
    /// The body is complete.
    case end
    /// The plugin gave up mid-body: the connection closes without finishing it.
    case abort
}

/// How a streamed response's delivery ended (``_Concurrency/AsyncStream/deliver(write:clientGone:)``).
enum StreamedResponseEnding {
    /// The plugin ended the body: finish the response.
    case ended
    /// The plugin aborted, or the stream ended without its end (the kernel stops): the
    /// client must not take the cut body for a whole one.
    case aborted
    /// A write failed (the client left) with this error.
    case clientGone(any Error)
}

extension AsyncStream where Element == StreamedResponseEvent {
    /// Writes each chunk with `write` and then completes the plugin's `written` (MB_OK, or
    /// MB_ERR_UNAVAILABLE when the write failed: the back-pressure the plugin waits on). The
    /// first failed write calls `clientGone` (tell the plugin to stop); later chunks are
    /// refused without writing. Returns at the body's end, or once the stream is over.
    func deliver(write: (ByteBuffer) async throws -> Void, clientGone: () -> Void) async -> StreamedResponseEnding {
        var failure: (any Error)?
        var aborted = false
        for await event in self {
            switch event {
            case .chunk(let buffer, let written):
                if failure != nil || aborted {
                    written?(MB_ERR_UNAVAILABLE)
                    continue
                }
                do {
                    try await write(buffer)
                    written?(MB_OK)
                } catch {
                    written?(MB_ERR_UNAVAILABLE)
                    failure = error
                    clientGone()
                }
            case .end:
                if failure == nil && !aborted { return .ended }
            case .abort:
                aborted = true
            }
        }
        if let failure { return .clientGone(failure) }
        return .aborted
    }
}

/// One request on a streaming prefix: its body source and its response stream.
final class StreamedExchange: Sendable {
    /// Chunks handed to plugins are cut to this size.
    static let maxChunk = 1 << 20

    let token: UInt64
    private let bodyLimit: Int
    private let body: BodySource
    private struct State {
        var reading = false
        var received = 0
        var finished = false
        /// Part of a chunk larger than ``maxChunk``, handed over on the next read.
        var leftover: ByteBuffer?
        var events: AsyncStream<StreamedResponseEvent>.Continuation?
        var ended = false
        var closed = false
    }
    private let state = Mutex(State())

    /// The request body as an iterator the host reads one chunk at a time: the client's
    /// stream, or a body the gateway already read whole (its direct path).
    final class BodySource: @unchecked Sendable {
        // Only touched by the one read in progress (State.reading guards it).
        private var iterator: RequestBody.AsyncIterator?
        private var whole: ByteBuffer?

        init(_ body: RequestBody) { iterator = body.makeAsyncIterator() }

        init(whole: ByteBuffer) { self.whole = whole.readableBytes > 0 ? whole : nil }

        /// Whether the chunks are at hand (``nextWhole()``) rather than to be awaited.
        var isWhole: Bool { iterator == nil }

        /// The next chunk of a whole body: the body once, then nil.
        func nextWhole() -> ByteBuffer? {
            defer { whole = nil }
            return whole
        }

        func next() async throws -> ByteBuffer? {
            guard var iterator else { return nextWhole() }
            defer { self.iterator = iterator }
            return try await iterator.next()
        }
    }

    init(token: UInt64, body: RequestBody, bodyLimit: Int) {
        self.token = token
        self.body = BodySource(body)
        self.bodyLimit = bodyLimit
    }

    /// An exchange whose body the gateway read whole before dispatching it (the direct path
    /// takes streaming prefixes for small bodies of a declared length): reads answer from it.
    init(token: UInt64, wholeBody: ByteBuffer, bodyLimit: Int) {
        self.token = token
        self.body = BodySource(whole: wholeBody)
        self.bodyLimit = bodyLimit
    }

    /// `request_body_read`: starts reading the next chunk; `completion` gets it (empty at the
    /// end) or why not. MB_ERR_REFUSED while a read is pending.
    func read(_ completion: @escaping @Sendable (mb_status, [UInt8]) -> Void) -> mb_status {
        enum Start {
            case busy, finished
            case leftover(ByteBuffer)
            case read
        }
        let start = state.withLock { state -> Start in
            if state.reading { return .busy }
            if state.finished || state.closed { return .finished }
            state.reading = true
            if var leftover = state.leftover {
                let chunk = leftover.readSlice(length: min(leftover.readableBytes, Self.maxChunk)) ?? ByteBuffer()
                state.leftover = leftover.readableBytes > 0 ? leftover : nil
                return .leftover(chunk)
            }
            return .read
        }
        switch start {
        case .busy:
            return MB_ERR_REFUSED
        case .finished:
            DispatchQueue.global().async { completion(MB_OK, []) }
        case .leftover(let chunk):
            DispatchQueue.global().async { [self] in
                state.withLock { $0.reading = false }
                completion(MB_OK, Array(buffer: chunk))
            }
        case .read where body.isWhole:
            let outcome = received(body.nextWhole())
            DispatchQueue.global().async { [self] in
                state.withLock { $0.reading = false }
                completion(outcome.0, outcome.1)
            }
        case .read:
            Task { [self] in
                let outcome: (mb_status, [UInt8])
                do {
                    outcome = received(try await body.next())
                } catch {
                    state.withLock { $0.finished = true }
                    outcome = (MB_ERR_UNAVAILABLE, Array("the request body could not be read: the client went away or sent a malformed body".utf8))
                }
                state.withLock { $0.reading = false }
                completion(outcome.0, outcome.1)
            }
        }
        return MB_OK
    }

    /// What a read answers for the chunk the body gave (nil: its end): at most ``maxChunk``
    /// of it (the rest waits for the next read), or the refusal past the body limit.
    private func received(_ chunk: ByteBuffer?) -> (mb_status, [UInt8]) {
        guard var chunk else {
            state.withLock { $0.finished = true }
            return (MB_OK, [])
        }
        let total = state.withLock { state -> Int in
            state.received += chunk.readableBytes
            return state.received
        }
        if total > bodyLimit {
            state.withLock { $0.finished = true }
            return (MB_ERR_INVALID_ARGUMENT, Array("request body is larger than the limit of \(bodyLimit) bytes ([kernel] body_limit_bytes)".utf8))
        }
        let first = chunk.readSlice(length: min(chunk.readableBytes, Self.maxChunk)) ?? ByteBuffer()
        if chunk.readableBytes > 0 { state.withLock { $0.leftover = chunk } }
        return (MB_OK, Array(buffer: first))
    }

    /// `respond_start`: the stream of response events, or nil when already started.
    func start() -> AsyncStream<StreamedResponseEvent>? {
        let (stream, continuation) = AsyncStream<StreamedResponseEvent>.makeStream()
        let fresh = state.withLock { state -> Bool in
            guard state.events == nil, !state.closed else { return false }
            state.events = continuation
            return true
        }
        return fresh ? stream : nil
    }

    /// Whether the response has started.
    var started: Bool { state.withLock { $0.events != nil } }

    /// Request body bytes the plugin has read so far (for the usage meter).
    var bytesRead: Int { state.withLock { $0.received } }

    /// `respond_write`: queues a chunk. MB_ERR_INVALID_ARGUMENT before start; MB_ERR_NOT_FOUND
    /// after the end. A chunk the client can no longer take completes MB_ERR_UNAVAILABLE.
    func write(_ chunk: ByteBuffer, written: (@Sendable (mb_status) -> Void)?) -> mb_status {
        let outcome = state.withLock { state -> (mb_status, AsyncStream<StreamedResponseEvent>.Continuation?) in
            guard let events = state.events else { return (MB_ERR_INVALID_ARGUMENT, nil) }
            if state.ended { return (MB_ERR_NOT_FOUND, nil) }
            return (MB_OK, events)
        }
        guard outcome.0 == MB_OK, let events = outcome.1 else { return outcome.0 }
        if case .terminated = events.yield(.chunk(chunk, written)) {
            if let written { DispatchQueue.global().async { written(MB_ERR_UNAVAILABLE) } }
        }
        return MB_OK
    }

    /// `respond_end`: ends (or aborts) the body. MB_ERR_NOT_FOUND when not started or ended.
    func end(aborted: Bool) -> mb_status {
        let events = state.withLock { state -> AsyncStream<StreamedResponseEvent>.Continuation? in
            guard let events = state.events, !state.ended else { return nil }
            state.ended = true
            return events
        }
        guard let events else { return MB_ERR_NOT_FOUND }
        events.yield(aborted ? .abort : .end)
        events.finish()
        return MB_OK
    }

    /// The client's request is over: later writes and reads fail, queued chunks complete
    /// MB_ERR_UNAVAILABLE (the writer drains them).
    func close() {
        let events = state.withLock { state -> AsyncStream<StreamedResponseEvent>.Continuation? in
            state.closed = true
            state.ended = true
            return state.events
        }
        events?.finish()
    }
}
