import Foundation
import Synchronization

/// The frames of one request on one worker, in two parts run by whoever needs them: up to
/// the response head (``untilHead()``, in the invoking task: a whole response ends there),
/// then, for a streamed response, its body (``sendBody(to:)``, in the task that writes to
/// the client). No task of its own: a frame from the worker resumes the task that waits.
///
/// Used by one task at a time, one part after the other; ``close(_:)`` runs once, when the
/// request is over (or when the exchange is dropped unfinished).
final class WorkerExchange: @unchecked Sendable {
    let worker: DenoWorker
    private let id: UInt32
    private let name: String
    private let limits: EdgeLimits
    private var events: AsyncStream<WorkerEvent>.AsyncIterator
    private let feeder: BodyFeeder
    private let pushed: Bool
    private var responseHead: (status: Int, headers: [(String, String)])?
    private var held: [UInt8] = []
    private var responseBytes = 0
    private let onClose: @Sendable (InvocationOutcome) -> Void
    private let closed = Atomic(false)

    /// The head is held until the first chunk of body (or its end) arrived: a response whose
    /// first chunk (the whole body of most responses; the runner sends at most 64 KiB per
    /// chunk) is over `max_response_bytes` is answered as a clean JSON failure, and a
    /// streamed response reaches the client from its first chunk on.
    static let headHoldBytes = 1
    /// The largest BODY frame sent to a worker (a larger chunk is sent over several pulls).
    static let bodyFrameBytes = 256 * 1024

    /// Registers a request on `worker` (``send(_:)`` writes it); nil when the worker is gone
    /// (`onClose` is not called then).
    init?(
        _ request: InvocationRequest, body: @escaping RequestBodySource, on worker: DenoWorker, function name: String,
        onClose: @escaping @Sendable (InvocationOutcome) -> Void
    ) {
        guard let (id, events) = worker.begin(kernelID: request.requestID) else { return nil }
        self.worker = worker
        self.id = id
        self.name = name
        self.limits = worker.limits
        self.events = events.makeAsyncIterator()
        self.onClose = onClose
        pushed = request.body != nil
        feeder = BodyFeeder(
            worker: worker, id: id, body: body, hasBody: request.hasBody && !pushed, limit: worker.limits.maxRequestBytes, function: name)
    }

    deinit {
        // Dropped before its end (a streamed answer the kernel never asked for): the worker stops the request.
        if !closed.load(ordering: .acquiring) {
            worker.send(WorkerFrame(.cancel, id: id))
            close(.clientGone)
        }
    }

    /// Ends the request once: forgets it on the worker and reports `outcome` to the pool.
    func close(_ outcome: InvocationOutcome) {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        worker.finish(id)
        onClose(outcome)
    }

    /// Writes the REQUEST (and a pushed body: REQUEST, BODY frames and BODY_END in one write).
    /// A head over 1 MiB is refused.
    func send(_ request: InvocationRequest) -> EdgeFailure? {
        let payload = FunctionPool.requestHead(request)
        guard payload.count <= WorkerFrame.maxPayload else {
            return EdgeFailure(.requestTooLarge, message: "the request's URL and headers are larger than 1 MiB", hint: "send fewer or shorter headers")
        }
        var frames = [WorkerFrame(.request, id: id, payload: payload)]
        if let whole = request.body {
            var offset = 0
            while offset < whole.count {
                let end = min(whole.count, offset + Self.bodyFrameBytes)
                frames.append(WorkerFrame(.body, id: id, payload: Array(whole[offset..<end])))
                offset = end
            }
            frames.append(WorkerFrame(.bodyEnd, id: id))
        }
        worker.send(frames)
        return nil
    }

    /// Frames until the response's head (with its first chunk) or its whole answer. Unless
    /// the answer streams, the request is over then (closed with its outcome).
    func untilHead() async -> InvocationStart {
        let start = await readHead()
        switch start {
        case .whole(let status, _, let body): close(.completed(status: status, bodyBytes: body.count))
        case .failed(let failure): close(.failed(failure))
        case .clientGone: close(.clientGone)
        case .streaming: break
        }
        return start
    }

    private func readHead() async -> InvocationStart {
        while let event = await events.next() {
            switch event {
            case .bodyPull:
                answerPull()
            case .clientGone:
                sendCancel()
                return .clientGone
            case .head(let status, let headers):
                if responseHead == nil { responseHead = (status, headers) }
            case .body(let chunk):
                guard let head = responseHead else {
                    worker.kill(.crashed(name, "it broke the worker protocol (RESPONSE_BODY before RESPONSE_HEAD)"))
                    continue
                }
                guard chunk.count <= limits.maxResponseBytes - responseBytes else {
                    sendCancel()
                    return .failed(.responseTooLarge(name, limits))
                }
                responseBytes += chunk.count
                held += chunk
                // Held, not yet written: credited at once.
                worker.send(WorkerFrame(.credit, id: id))
                if held.count >= Self.headHoldBytes { return .streaming(status: head.status, headers: head.headers, StreamingResponse(self)) }
            case .end:
                guard let head = responseHead else {
                    return .failed(
                        EdgeFailure(.functionError, message: "function \"\(name)\" ended its response without a status", hint: "return a Response from the handler"))
                }
                defer { held = [] }
                return .whole(status: head.status, headers: head.headers, body: held)
            case .complete(let status, let headers, let body):
                guard responseHead == nil else {
                    worker.kill(.crashed(name, "it broke the worker protocol (a second RESPONSE_HEAD)"))
                    continue
                }
                guard body.count <= limits.maxResponseBytes else { return .failed(.responseTooLarge(name, limits)) }
                return .whole(status: status, headers: headers, body: body)
            case .error(let message, let stack):
                return .failed(thrown(message, stack))
            case .failed(let failure):
                return .failed(failure)
            }
        }
        // The events end without an answer only when the task was cancelled (or the worker vanished).
        if Task.isCancelled {
            sendCancel()
            return .clientGone
        }
        return .failed(.crashed(name, "it stopped answering"))
    }

    /// After ``untilHead()`` answered `.streaming` (through ``StreamingResponse``): the held chunk, then the rest of the body
    /// as it comes, each chunk credited once `sink` took it. The sink's `head` is not called
    /// (the caller sent the head).
    func sendBody(to sink: some ResponseSink) async -> InvocationOutcome {
        func fail(_ failure: EdgeFailure) async -> InvocationOutcome {
            await sink.abort(failure)
            return .aborted(failure)
        }
        if !held.isEmpty {
            let first = held
            held = []
            guard await sink.write(first) else { return cancelledAfterHead() }
        }
        while let event = await events.next() {
            switch event {
            case .bodyPull:
                answerPull()
            case .clientGone:
                return cancelledAfterHead()
            case .head:
                continue
            case .body(let chunk):
                guard chunk.count <= limits.maxResponseBytes - responseBytes else {
                    sendCancel()
                    return await fail(.responseTooLarge(name, limits))
                }
                responseBytes += chunk.count
                guard await sink.write(chunk) else { return cancelledAfterHead() }
                worker.send(WorkerFrame(.credit, id: id))
            case .end:
                await sink.end()
                return .completed(status: responseHead?.status ?? 200, bodyBytes: responseBytes)
            case .complete:
                worker.kill(.crashed(name, "it broke the worker protocol (a second RESPONSE_HEAD)"))
            case .error(let message, let stack):
                return await fail(thrown(message, stack))
            case .failed(let failure):
                return await fail(failure)
            }
        }
        if Task.isCancelled { return cancelledAfterHead() }
        return await fail(.crashed(name, "it stopped answering"))
    }

    /// Answered beside the response: a function may stream its answer while it still reads
    /// its body (a duplex echo), and the client may wait for that answer before it sends more.
    private func answerPull() {
        if pushed {
            worker.kill(.crashed(name, "it broke the worker protocol (BODY_PULL for a body pushed whole)"))
            return
        }
        let feeder = feeder
        Task { await feeder.answerPull() }
    }

    /// The client went away: the worker stops the request.
    private func sendCancel() {
        worker.send(WorkerFrame(.cancel, id: id))
    }

    private func cancelledAfterHead() -> InvocationOutcome {
        sendCancel()
        return .clientGone
    }

    /// The handler threw (an ERROR frame).
    private func thrown(_ message: String, _ stack: String?) -> EdgeFailure {
        EdgeFailure(.functionError, message: "function \"\(name)\" threw: \(message)", hint: "read the stack and the function's logs", stack: stack)
    }
}

/// Answers one request's BODY_PULLs (the worker pulls again only once a pull was answered,
/// so one answer runs at a time): the next chunk from the client, split to the frame size,
/// or BODY_END; past `max_request_bytes`, or when the client is gone, the request ends.
final class BodyFeeder: Sendable {
    private struct State {
        var pending: ArraySlice<UInt8> = []
        var ended: Bool
        var received = 0
    }
    private let worker: DenoWorker
    private let id: UInt32
    private let body: RequestBodySource
    private let limit: Int
    private let function: String
    private let state: Mutex<State>

    init(worker: DenoWorker, id: UInt32, body: @escaping RequestBodySource, hasBody: Bool, limit: Int, function: String) {
        self.worker = worker
        self.id = id
        self.body = body
        self.limit = limit
        self.function = function
        state = Mutex(State(ended: !hasBody))
    }

    func answerPull() async {
        let needsChunk = state.withLock { $0.pending.isEmpty && !$0.ended }
        if needsChunk {
            var chunk: [UInt8]?
            do {
                repeat { chunk = try await body() } while chunk?.isEmpty == true
            } catch {
                worker.clientLeft(id)
                return
            }
            let tooLarge = state.withLock { state -> Bool in
                guard let chunk else {
                    state.ended = true
                    return false
                }
                guard chunk.count <= limit - state.received else { return true }
                state.received += chunk.count
                state.pending = chunk[...]
                return false
            }
            if tooLarge {
                var limits = EdgeLimits()
                limits.maxRequestBytes = limit
                worker.fail(id, .requestTooLarge(function, limits))
                return
            }
        }
        let piece = state.withLock { state -> [UInt8]? in
            guard !state.pending.isEmpty else { return nil }
            let piece = state.pending.prefix(WorkerExchange.bodyFrameBytes)
            state.pending = state.pending.dropFirst(piece.count)
            return Array(piece)
        }
        if let piece {
            worker.send(WorkerFrame(.body, id: id, payload: piece))
        } else {
            worker.send(WorkerFrame(.bodyEnd, id: id))
        }
    }
}
