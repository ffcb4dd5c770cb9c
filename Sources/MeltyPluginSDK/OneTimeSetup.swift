import Synchronization

/// Work that must succeed once before anything else runs (a schema migration, provisioning
/// a portal's database): the first caller starts it, concurrent callers await the same
/// attempt, and a failure is forgotten so the next caller tries again.
public final class OneTimeSetup: Sendable {
    private struct State {
        var done = false
        var attempt: Task<Void, any Error>?
    }
    private let state = Mutex(State())

    /// A setup that has not run yet.
    public init() {}

    /// Whether the setup has succeeded.
    public var isDone: Bool { state.withLock { $0.done } }

    /// Runs `work` unless it already succeeded, or waits for the attempt under way; rethrows
    /// that attempt's error.
    public func ensure(_ work: @escaping @Sendable () async throws -> Void) async throws {
        let attempt: Task<Void, any Error>? = state.withLock { state in
            if state.done { return nil }
            if let attempt = state.attempt { return attempt }
            let attempt = Task { try await work() }
            state.attempt = attempt
            return attempt
        }
        guard let attempt else { return }
        do {
            try await attempt.value
            state.withLock { $0.done = true }
        } catch {
            state.withLock { state in
                if state.attempt == attempt { state.attempt = nil }
            }
            throw error
        }
    }
}
