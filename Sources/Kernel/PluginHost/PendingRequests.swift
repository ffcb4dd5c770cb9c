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
/// token completes exactly once. A sweeper answers 504 for requests past their deadline.
final class PendingRequests: @unchecked Sendable {
    static let shared = PendingRequests()

    private struct Waiter {
        let continuation: CheckedContinuation<PluginResponse, Never>
        let deadline: Double
        let plugin: String
    }

    private let state = NIOLockedValueBox<(next: UInt64, waiting: [UInt64: Waiter])>((1, [:]))
    private let sweeper = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "meltybase.request-deadlines"))

    private init() {
        sweeper.schedule(deadline: .now() + 0.25, repeating: 0.25)
        sweeper.setEventHandler { [weak self] in self?.expire(now: Date().timeIntervalSince1970) }
        sweeper.resume()
    }

    /// Registers a waiter and returns its token; call `dispatch` with it synchronously.
    func run(plugin: String, timeout: Double, dispatch: (UInt64) -> Void) async -> PluginResponse {
        await withCheckedContinuation { continuation in
            let token = state.withLockedValue { state -> UInt64 in
                let token = state.next
                state.next += 1
                state.waiting[token] = Waiter(
                    continuation: continuation, deadline: Date().timeIntervalSince1970 + timeout, plugin: plugin)
                return token
            }
            dispatch(token)
        }
    }

    /// Completes `token`; false when it is unknown or already completed.
    func complete(_ token: UInt64, with response: PluginResponse) -> Bool {
        guard let waiter = state.withLockedValue({ $0.waiting.removeValue(forKey: token) }) else { return false }
        waiter.continuation.resume(returning: response)
        return true
    }

    /// Number of requests waiting for their plugin.
    var count: Int { state.withLockedValue { $0.waiting.count } }

    private func expire(now: Double) {
        let expired = state.withLockedValue { state -> [Waiter] in
            let tokens = state.waiting.filter { $0.value.deadline < now }.map(\.key)
            return tokens.compactMap { state.waiting.removeValue(forKey: $0) }
        }
        for waiter in expired {
            let body = GatewayError(
                status: 504, code: "plugin_timeout",
                message: "plugin \"\(waiter.plugin)\" did not complete the request in time",
                hint: "raise [kernel] request_timeout_seconds or check the plugin's logs"
            ).jsonBytes
            waiter.continuation.resume(returning: PluginResponse(
                status: 504, headers: [("content-type", "application/json")], body: body))
        }
    }
}
