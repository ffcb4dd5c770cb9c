import EdgeWorkers
import Foundation
import MeltyPluginSDK
import Synchronization

/// Carries a function's response from its pool (a ``ResponseSink``) to the kernel's
/// streamed answer: the head resumes the request's handler, which returns a streaming
/// ``PluginResponse``; each chunk then waits until the kernel wrote it to the client (the
/// backpressure the worker's credit window rests on).
final class ResponseRelay: ResponseSink {
    /// One chunk and who waits for it to be written (true) or refused (false).
    struct Chunk: Sendable {
        let bytes: [UInt8]
        let written: CheckedContinuation<Bool, Never>
    }

    /// What the request's handler answers with: the head, and the body when it came whole.
    typealias Head = (status: Int, headers: [(String, String)], whole: [UInt8]?)

    private struct State {
        var head: CheckedContinuation<Head?, Never>?
        /// A head that arrived before anyone waited for it.
        var early: Head?
        var headSent = false
        var gone = false
    }
    private let state = Mutex(State())
    private let chunks: AsyncStream<Chunk>
    private let chunkInbox: AsyncStream<Chunk>.Continuation
    private let failure = Mutex<EdgeFailure?>(nil)

    init() {
        (chunks, chunkInbox) = AsyncStream<Chunk>.makeStream()
    }

    /// Waits for the head; nil when the invocation ended before sending one.
    func awaitHead() async -> Head? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Head?? in
                if state.headSent || state.gone {
                    defer { state.early = nil }
                    return .some(state.early)
                }
                state.head = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// The invocation is over without a head (it failed, or the client left): releases `awaitHead`.
    func finishWithoutHead() {
        let waiting = state.withLock { state -> CheckedContinuation<Head?, Never>? in
            state.gone = true
            defer { state.head = nil }
            return state.head
        }
        waiting?.resume(returning: nil)
        chunkInbox.finish()
    }

    func head(status: Int, headers: [(String, String)]) async {
        resolveHead((status, headers, nil))
    }

    func whole(status: Int, headers: [(String, String)], body: [UInt8]) async {
        resolveHead((status, headers, body))
        chunkInbox.finish()
    }

    private func resolveHead(_ head: Head) {
        let waiting = state.withLock { state -> CheckedContinuation<Head?, Never>? in
            state.headSent = true
            // Nobody waits yet (the answer came first): kept for awaitHead.
            if state.head == nil { state.early = head }
            defer { state.head = nil }
            return state.head
        }
        waiting?.resume(returning: head)
    }

    func write(_ chunk: [UInt8]) async -> Bool {
        await withCheckedContinuation { continuation in
            if case .terminated = chunkInbox.yield(Chunk(bytes: chunk, written: continuation)) { continuation.resume(returning: false) }
        }
    }

    func end() async { chunkInbox.finish() }

    func abort(_ failure: EdgeFailure) async {
        self.failure.withLock { $0 = failure }
        chunkInbox.finish()
    }

    /// Writes the chunks to the client as they come; throws after an abort (the client
    /// sees a truncated response). A write that fails (the client left) refuses the rest.
    func pump(into writer: ResponseBodyWriter) async throws {
        var clientGone = false
        for await chunk in chunks {
            if clientGone {
                chunk.written.resume(returning: false)
                continue
            }
            do {
                try await writer.write(chunk.bytes)
                chunk.written.resume(returning: true)
            } catch {
                chunk.written.resume(returning: false)
                clientGone = true
            }
        }
        if let failure = failure.withLock({ $0 }) { throw failure }
        if clientGone { throw PluginError.unavailable("the client went away") }
    }

}
