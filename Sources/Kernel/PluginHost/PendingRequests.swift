import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// What a plugin answered, copied out of plugin memory.
public struct PluginResponse: Sendable {
    /// HTTP status.
    public var status: Int
    /// Response headers in order.
    public var headers: [(String, String)]
    /// Response body.
    public var body: [UInt8]
    /// The body's chunks when the plugin streams it (ABI 1.7 `respond_start`); `body` is then empty.
    var stream: AsyncStream<StreamedResponseEvent>? = nil
}

/// One kernel's requests handed to plugins and not yet completed, by token.
///
/// `respond` may arrive from any thread, before or after `handle_request` returns; each
/// token completes exactly once. A plugin that answers inside `handle_request` (the
/// common synchronous case) is picked up without suspending the request's task. A
/// sweeper answers 504 for requests past their deadline. Tokens carry the kernel's slot
/// in their top bits (``HostContext``), so they are unique across the kernels of a process.
final class PendingRequests: Sendable {
    private enum Slot {
        /// Dispatched; the plugin has not answered and nobody waits yet.
        case dispatched(deadline: Double, plugin: String)
        /// Answered before the task started waiting.
        case answered(PluginResponse)
        /// The task waits for the answer.
        case waiting(CheckedContinuation<PluginResponse, Never>, deadline: Double, plugin: String)
        /// A callback takes the answer, on the thread that gives it.
        case callback(@Sendable (PluginResponse) -> Void, deadline: Double, plugin: String)
    }

    /// Who gets an answer that arrives: a waiting task or a callback.
    private enum Receiver {
        case task(CheckedContinuation<PluginResponse, Never>)
        case callback(@Sendable (PluginResponse) -> Void)

        func deliver(_ response: PluginResponse) {
            switch self {
            case .task(let continuation): continuation.resume(returning: response)
            case .callback(let callback): callback(response)
            }
        }
    }

    private let state: Mutex<(next: UInt64, slots: [UInt64: Slot])>

    /// How the host gives up on a request: the client's connection (when it closes before the
    /// answer, the request is abandoned) and the plugin's `cancel_request`.
    struct Abandonment: Sendable {
        /// The client's connection; nil when there is none to watch.
        let channel: (any Channel)?
        /// When the request was dispatched (seconds since 1970).
        var started = Date().timeIntervalSince1970
        /// Tells the plugin to stop working on the request.
        let cancel: @Sendable () -> Void
    }
    /// Abandonments of requests in flight, by token.
    private let abandonments = NIOLockedValueBox<[UInt64: Abandonment]>([:])
    private let sweeper = Mutex<Task<Void, Never>?>(nil)

    /// A table whose tokens start at `firstToken + 1`.
    init(firstToken: UInt64 = 0) {
        state = Mutex((firstToken + 1, [:]))
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                guard let self else { return }
                self.expire(now: Date().timeIntervalSince1970)
            }
        }
        sweeper.withLock { $0 = task }
    }

    deinit { stop() }

    /// Stops the deadline sweeper (the kernel stopped).
    func stop() {
        sweeper.withLock { $0?.cancel() }
    }

    /// Registers a token, calls `dispatch` with it, and returns the plugin's answer.
    /// With `abandonment`, a request whose client disconnects, or which times out, is
    /// cancelled in the plugin.
    func run(
        plugin: String, timeout: Double, abandonment: ((UInt64) -> Abandonment)? = nil,
        dispatch: (UInt64) -> Void
    ) async -> PluginResponse {
        let (token, early, deadline) = start(plugin: plugin, timeout: timeout, abandonment: abandonment, dispatch: dispatch)
        if let early { return early }
        return await answer(token, plugin: plugin, deadline: deadline)
    }

    /// The synchronous half of ``run``: registers a token, calls `dispatch` with it, and
    /// returns the answer when the plugin gave it inside `dispatch` (the gateway's direct
    /// path answers those on the event loop without a task). Without an early answer, the
    /// caller must call ``answer(_:plugin:deadline:)``.
    func start(
        plugin: String, timeout: Double, abandonment: ((UInt64) -> Abandonment)? = nil, dispatch: (UInt64) -> Void
    )
        -> (token: UInt64, early: PluginResponse?, deadline: Double)
    {
        let deadline = Date().timeIntervalSince1970 + timeout
        let token = state.withLock { state -> UInt64 in
            let token = state.next
            state.next += 1
            state.slots[token] = .dispatched(deadline: deadline, plugin: plugin)
            return token
        }
        if let abandonment {
            let entry = abandonment(token)
            abandonments.withLockedValue { $0[token] = entry }
        }
        dispatch(token)
        let early = state.withLock { state -> PluginResponse? in
            guard case .answered(let response)? = state.slots[token] else { return nil }
            state.slots[token] = nil
            return response
        }
        if early != nil, abandonment != nil { abandonments.withLockedValue { _ = $0.removeValue(forKey: token) } }
        return (token, early, deadline)
    }

    /// The asynchronous half of ``run``: waits for the answer to a token from ``start``.
    func answer(_ token: UInt64, plugin: String, deadline: Double) async -> PluginResponse {
        defer { abandonments.withLockedValue { _ = $0.removeValue(forKey: token) } }
        return await withCheckedContinuation { continuation in
            if let answered = takeAnswer(token, orPark: .waiting(continuation, deadline: deadline, plugin: plugin)) {
                continuation.resume(returning: answered)
            }
        }
    }

    /// The answer of `token` when it is already there (the token is then done); else `slot`
    /// waits for it.
    private func takeAnswer(_ token: UInt64, orPark slot: Slot) -> PluginResponse? {
        state.withLock { state in
            if case .answered(let response)? = state.slots[token] {
                state.slots[token] = nil
                return response
            }
            state.slots[token] = slot
            return nil
        }
    }

    /// ``answer(_:plugin:deadline:)`` without a task: `then` gets the answer, now when it is
    /// there, else on the thread that gives it (the plugin's `respond`, or the sweeper's
    /// timeout). For the gateway's direct path, which then hands it to the connection's loop.
    func answer(_ token: UInt64, plugin: String, deadline: Double, then: @escaping @Sendable (PluginResponse) -> Void) {
        let delivered: @Sendable (PluginResponse) -> Void = { [abandonments] response in
            abandonments.withLockedValue { _ = $0.removeValue(forKey: token) }
            then(response)
        }
        if let answered = takeAnswer(token, orPark: .callback(delivered, deadline: deadline, plugin: plugin)) { delivered(answered) }
    }

    /// Completes `token` with `response`; false when the token is unknown, timed out or
    /// already answered.
    func complete(_ token: UInt64, with response: PluginResponse) -> Bool {
        let outcome = state.withLock { state -> (Bool, Receiver?) in
            switch state.slots[token] {
            case .dispatched?:
                state.slots[token] = .answered(response)
                return (true, nil)
            case .waiting(let continuation, _, _)?:
                state.slots[token] = nil
                return (true, .task(continuation))
            case .callback(let callback, _, _)?:
                state.slots[token] = nil
                return (true, .callback(callback))
            case .answered?, nil:
                return (false, nil)
            }
        }
        outcome.1?.deliver(response)
        return outcome.0
    }

    /// The plugin a request in progress was dispatched to (nil once answered or unknown).
    func plugin(of token: UInt64) -> String? {
        state.withLock { state in
            switch state.slots[token] {
            case .dispatched(_, let plugin)?, .waiting(_, _, let plugin)?, .callback(_, _, let plugin)?: plugin
            case .answered?, nil: nil
            }
        }
    }

    /// Requests not yet handed back to their caller.
    var count: Int { state.withLock { $0.slots.count } }

    private func expire(now: Double) {
        let watched = abandonments.withLockedValue { $0 }
        // Requests whose client has gone: answered (to nobody) and cancelled like a timeout.
        let gone = Set(watched.filter { $0.value.channel.map { !$0.isActive } ?? false }.keys)
        finish(timedOutBefore: now, clientGone: gone, watched: watched)
        // Hummingbird allows half-closure, so a client that closed its side while its request
        // runs leaves the channel active: the socket's TCP state says so (CLOSE_WAIT, CLOSE).
        // Asked only of requests running for half a second or more.
        for (token, entry) in watched where now - entry.started >= 0.5 && !gone.contains(token) {
            guard let channel = entry.channel, channel.isActive, let socket = channel as? SocketOptionProvider else { continue }
            socket.getTCPInfo().whenSuccess { [weak self] info in
                let closeWait: UInt8 = 8, closed: UInt8 = 7
                if info.tcpi_state == closeWait || info.tcpi_state == closed {
                    self?.finish(timedOutBefore: nil, clientGone: [token], watched: [token: entry])
                }
            }
        }
    }

    /// Answers the pending requests past their deadline (504) or whose client is gone (499),
    /// telling the plugin to stop each first.
    private func finish(timedOutBefore now: Double?, clientGone gone: Set<UInt64>, watched: [UInt64: Abandonment]) {
        let expired = state.withLock { state -> [(Receiver?, UInt64, PluginResponse)] in
            var found: [(Receiver?, UInt64, PluginResponse)] = []
            func due(_ token: UInt64, _ deadline: Double) -> Bool { gone.contains(token) || now.map { deadline < $0 } ?? false }
            for (token, slot) in state.slots {
                switch slot {
                case .waiting(let continuation, let deadline, let plugin) where due(token, deadline):
                    found.append((.task(continuation), token, gone.contains(token) ? Self.clientClosed(plugin) : Self.timeout(plugin)))
                    state.slots[token] = nil
                case .callback(let callback, let deadline, let plugin) where due(token, deadline):
                    found.append((.callback(callback), token, gone.contains(token) ? Self.clientClosed(plugin) : Self.timeout(plugin)))
                    state.slots[token] = nil
                case .dispatched(let deadline, let plugin) where due(token, deadline):
                    let answer = gone.contains(token) ? Self.clientClosed(plugin) : Self.timeout(plugin)
                    found.append((nil, token, answer))
                    state.slots[token] = .answered(answer)
                default: break
                }
            }
            return found
        }
        for (receiver, token, answer) in expired {
            // The plugin stops the work first (its instance is alive: the request holds it).
            watched[token]?.cancel()
            receiver?.deliver(answer)
        }
    }

    /// The answer recorded for a request whose client disconnected (nobody reads it).
    private static func clientClosed(_ plugin: String) -> PluginResponse {
        let body = GatewayError(status: 499, code: "client_closed_request", message: "the client closed the connection before plugin \"\(plugin)\" answered").jsonBytes
        return PluginResponse(status: 499, headers: [("content-type", "application/json")], body: body)
    }

    private static func timeout(_ plugin: String) -> PluginResponse {
        let body = GatewayError(
            status: 504, code: "plugin_timeout",
            message: "plugin \"\(plugin)\" did not complete the request in time",
            hint: "raise [kernel] request_timeout_seconds or check the plugin's logs"
        ).jsonBytes
        return PluginResponse(status: 504, headers: [("content-type", "application/json")], body: body)
    }
}
