import Foundation
import NIOConcurrencyHelpers

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
    private let sweeper = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "meltybase.request-deadlines"))

    private init() {
        sweeper.schedule(deadline: .now() + 0.25, repeating: 0.25)
        sweeper.setEventHandler { [weak self] in self?.expire(now: Date().timeIntervalSince1970) }
        sweeper.resume()
    }

    /// Registers a token, calls `dispatch` with it, and returns the plugin's answer.
    /// `owner` (the kernel's plugin host) lets one kernel count its own pending requests.
    func run(plugin: String, owner: ObjectIdentifier, timeout: Double, dispatch: (UInt64) -> Void) async -> PluginResponse {
        let (token, early, deadline) = start(plugin: plugin, owner: owner, timeout: timeout, dispatch: dispatch)
        if let early { return early }
        return await answer(token, plugin: plugin, owner: owner, deadline: deadline)
    }

    /// The synchronous half of ``run``: registers a token, calls `dispatch` with it, and
    /// returns the answer when the plugin gave it inside `dispatch` (the gateway's direct
    /// path answers those on the event loop without a task).
    func start(plugin: String, owner: ObjectIdentifier, timeout: Double, dispatch: (UInt64) -> Void)
        -> (token: UInt64, early: PluginResponse?, deadline: Double) {
        let deadline = Date().timeIntervalSince1970 + timeout
        let token = state.withLockedValue { state -> UInt64 in
            let token = state.next
            state.next += 1
            state.slots[token] = .dispatched(deadline: deadline, plugin: plugin, owner: owner)
            return token
        }
        dispatch(token)
        let early = state.withLockedValue { state -> PluginResponse? in
            guard case .answered(let response, _)? = state.slots[token] else { return nil }
            state.slots[token] = nil
            return response
        }
        return (token, early, deadline)
    }

    /// The asynchronous half of ``run``: waits for the answer to a token from ``start``.
    func answer(_ token: UInt64, plugin: String, owner: ObjectIdentifier, deadline: Double) async -> PluginResponse {
        await withCheckedContinuation { continuation in
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
        let expired = state.withLockedValue { state -> [(CheckedContinuation<PluginResponse, Never>?, UInt64, String, ObjectIdentifier)] in
            var found: [(CheckedContinuation<PluginResponse, Never>?, UInt64, String, ObjectIdentifier)] = []
            for (token, slot) in state.slots {
                switch slot {
                case .waiting(let continuation, let deadline, let plugin, let owner) where deadline < now:
                    found.append((continuation, token, plugin, owner))
                case .dispatched(let deadline, let plugin, let owner) where deadline < now:
                    found.append((nil, token, plugin, owner))
                default: break
                }
            }
            for (continuation, token, plugin, owner) in found {
                state.slots[token] = continuation == nil ? .answered(Self.timeout(plugin), owner: owner) : nil
            }
            return found
        }
        for (continuation, _, plugin, _) in expired { continuation?.resume(returning: Self.timeout(plugin)) }
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
