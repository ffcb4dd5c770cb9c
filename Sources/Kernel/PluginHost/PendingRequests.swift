import Foundation
import Synchronization

/// What a plugin answered, copied out of plugin memory.
public struct PluginResponse: Sendable {
    /// HTTP status.
    public var status: Int
    /// Response headers in order.
    public var headers: [(String, String)]
    /// Response body.
    public var body: [UInt8]
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
    }

    private let state: Mutex<(next: UInt64, slots: [UInt64: Slot])>
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
    func run(plugin: String, timeout: Double, dispatch: (UInt64) -> Void) async -> PluginResponse {
        let deadline = Date().timeIntervalSince1970 + timeout
        let token = state.withLock { state -> UInt64 in
            let token = state.next
            state.next += 1
            state.slots[token] = .dispatched(deadline: deadline, plugin: plugin)
            return token
        }
        dispatch(token)
        let early = state.withLock { state -> PluginResponse? in
            guard case .answered(let response)? = state.slots[token] else { return nil }
            state.slots[token] = nil
            return response
        }
        if let early { return early }
        return await withCheckedContinuation { continuation in
            let answered = state.withLock { state -> PluginResponse? in
                switch state.slots[token] {
                case .answered(let response)?:
                    state.slots[token] = nil
                    return response
                default:
                    state.slots[token] = .waiting(continuation, deadline: deadline, plugin: plugin)
                    return nil
                }
            }
            if let answered { continuation.resume(returning: answered) }
        }
    }

    /// Completes `token` with `response`; false when the token is unknown, timed out or
    /// already answered.
    func complete(_ token: UInt64, with response: PluginResponse) -> Bool {
        let outcome = state.withLock { state -> (Bool, CheckedContinuation<PluginResponse, Never>?) in
            switch state.slots[token] {
            case .dispatched?:
                state.slots[token] = .answered(response)
                return (true, nil)
            case .waiting(let continuation, _, _)?:
                state.slots[token] = nil
                return (true, continuation)
            case .answered?, nil:
                return (false, nil)
            }
        }
        outcome.1?.resume(returning: response)
        return outcome.0
    }

    /// Requests not yet handed back to their caller.
    var count: Int { state.withLock { $0.slots.count } }

    private func expire(now: Double) {
        let expired = state.withLock { state -> [(CheckedContinuation<PluginResponse, Never>?, UInt64, String)] in
            var found: [(CheckedContinuation<PluginResponse, Never>?, UInt64, String)] = []
            for (token, slot) in state.slots {
                switch slot {
                case .waiting(let continuation, let deadline, let plugin) where deadline < now:
                    found.append((continuation, token, plugin))
                case .dispatched(let deadline, let plugin) where deadline < now:
                    found.append((nil, token, plugin))
                default: break
                }
            }
            for (continuation, token, plugin) in found {
                state.slots[token] = continuation == nil ? .answered(Self.timeout(plugin)) : nil
            }
            return found
        }
        for (continuation, _, plugin) in expired { continuation?.resume(returning: Self.timeout(plugin)) }
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
