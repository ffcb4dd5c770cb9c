import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// What a plugin answered, copied out of plugin memory.
public struct PluginResponse: Sendable {
    /// HTTP status.
    public var status: Int
    /// Response headers in order.
    public var headers: [(String, String)]
    /// Response body.
    public var body: [UInt8]
}

/// Requests handed to plugins and not yet completed, by token.
///
/// `respond` may arrive from any thread, before or after `handle_request` returns; each
/// token completes exactly once. A plugin that answers inside `handle_request` (the
/// common synchronous case) is picked up without suspending the request's task. A
/// sweeper answers 504 for requests past their deadline.
final class PendingRequests: @unchecked Sendable {
    static let shared = PendingRequests()

    private enum Slot {
        /// Dispatched; the plugin has not answered and nobody waits yet.
        case dispatched(deadline: Double, plugin: String, owner: ObjectIdentifier)
        /// Answered before the task started waiting.
        case answered(PluginResponse, owner: ObjectIdentifier)
        /// The task waits for the answer.
        case waiting(CheckedContinuation<PluginResponse, Never>, deadline: Double, plugin: String, owner: ObjectIdentifier)
    }

    private let state = NIOLockedValueBox<(next: UInt64, slots: [UInt64: Slot])>((1, [:]))

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
    private let sweeper = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "meltybase.request-deadlines"))

    private init() {
        sweeper.schedule(deadline: .now() + 0.25, repeating: 0.25)
        sweeper.setEventHandler { [weak self] in self?.expire(now: Date().timeIntervalSince1970) }
        sweeper.resume()
    }

    /// Registers a token, calls `dispatch` with it, and returns the plugin's answer.
    /// `owner` (the kernel's plugin host) lets one kernel count its own pending requests.
    /// With `abandonment`, a request whose client disconnects, or which times out, is
    /// cancelled in the plugin.
    func run(plugin: String, owner: ObjectIdentifier, timeout: Double, abandonment: ((UInt64) -> Abandonment)? = nil,
             dispatch: (UInt64) -> Void) async -> PluginResponse {
        let deadline = Date().timeIntervalSince1970 + timeout
        let token = state.withLockedValue { state -> UInt64 in
            let token = state.next
            state.next += 1
            state.slots[token] = .dispatched(deadline: deadline, plugin: plugin, owner: owner)
            return token
        }
        if let abandonment {
            let entry = abandonment(token)
            abandonments.withLockedValue { $0[token] = entry }
        }
        defer { if abandonment != nil { abandonments.withLockedValue { _ = $0.removeValue(forKey: token) } } }
        dispatch(token)
        let early = state.withLockedValue { state -> PluginResponse? in
            guard case .answered(let response, _)? = state.slots[token] else { return nil }
            state.slots[token] = nil
            return response
        }
        if let early { return early }
        return await withCheckedContinuation { continuation in
            let answered = state.withLockedValue { state -> PluginResponse? in
                switch state.slots[token] {
                case .answered(let response, _)?:
                    state.slots[token] = nil
                    return response
                default:
                    state.slots[token] = .waiting(continuation, deadline: deadline, plugin: plugin, owner: owner)
                    return nil
                }
            }
            if let answered { continuation.resume(returning: answered) }
        }
    }

    /// Completes `token`; false when it is unknown or already completed.
    func complete(_ token: UInt64, with response: PluginResponse) -> Bool {
        let outcome = state.withLockedValue { state -> (Bool, CheckedContinuation<PluginResponse, Never>?) in
            switch state.slots[token] {
            case .dispatched(_, _, let owner)?:
                state.slots[token] = .answered(response, owner: owner)
                return (true, nil)
            case .waiting(let continuation, _, _, _)?:
                state.slots[token] = nil
                return (true, continuation)
            case .answered?, nil:
                return (false, nil)
            }
        }
        outcome.1?.resume(returning: response)
        return outcome.0
    }

    /// Number of requests of one owner (a kernel's plugin host) not yet handed back to their caller.
    func count(owner: ObjectIdentifier) -> Int {
        state.withLockedValue { state in
            state.slots.values.filter { slot in
                switch slot {
                case .dispatched(_, _, let tag), .waiting(_, _, _, let tag), .answered(_, let tag): return tag == owner
                }
            }.count
        }
    }

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
        let expired = state.withLockedValue { state -> [(CheckedContinuation<PluginResponse, Never>?, UInt64, PluginResponse)] in
            var found: [(CheckedContinuation<PluginResponse, Never>?, UInt64, PluginResponse)] = []
            func due(_ token: UInt64, _ deadline: Double) -> Bool { gone.contains(token) || now.map { deadline < $0 } ?? false }
            for (token, slot) in state.slots {
                switch slot {
                case .waiting(let continuation, let deadline, let plugin, _) where due(token, deadline):
                    found.append((continuation, token, gone.contains(token) ? Self.clientClosed(plugin) : Self.timeout(plugin)))
                    state.slots[token] = nil
                case .dispatched(let deadline, let plugin, let owner) where due(token, deadline):
                    let answer = gone.contains(token) ? Self.clientClosed(plugin) : Self.timeout(plugin)
                    found.append((nil, token, answer))
                    state.slots[token] = .answered(answer, owner: owner)
                default: break
                }
            }
            return found
        }
        for (continuation, token, answer) in expired {
            // The plugin stops the work first (its instance is alive: the request holds it).
            watched[token]?.cancel()
            continuation?.resume(returning: answer)
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
