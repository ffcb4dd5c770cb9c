import Synchronization

/// The first of several outcomes wins: it resumes the waiting continuation once and cancels
/// the racing tasks. An outcome that arrives before the continuation is set is kept for it.
final class AgentRace<Value: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Value, any Error>?
        var outcome: Result<Value, any Error>?
        var tasks: [Task<Void, Never>] = []
        var resumed = false
    }
    private let state = Mutex(State())

    /// Sets the continuation to resume and the tasks to cancel once an outcome arrived.
    func start(_ continuation: CheckedContinuation<Value, any Error>, tasks: [Task<Void, Never>]) {
        let ready: Result<Value, any Error>? = state.withLock { state in
            if let outcome = state.outcome, !state.resumed {
                state.resumed = true
                return outcome
            }
            state.continuation = continuation
            state.tasks = tasks
            return nil
        }
        if let ready {
            tasks.forEach { $0.cancel() }
            continuation.resume(with: ready)
        }
    }

    /// Offers an outcome; only the first counts.
    func finish(_ outcome: Result<Value, any Error>) {
        let (continuation, tasks): (CheckedContinuation<Value, any Error>?, [Task<Void, Never>]) = state.withLock { state in
            guard !state.resumed, state.outcome == nil else { return (nil, []) }
            state.outcome = outcome
            guard let continuation = state.continuation else { return (nil, []) }
            state.resumed = true
            state.continuation = nil
            defer { state.tasks = [] }
            return (continuation, state.tasks)
        }
        tasks.forEach { $0.cancel() }
        continuation?.resume(with: outcome)
    }
}
