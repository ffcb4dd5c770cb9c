import Synchronization

/// A continuation that the first of several racing callbacks resumes (a result or a
/// timeout); the later ones are ignored.
final class ResumeOnce<Value: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<Value, any Error>?>

    /// A gate in front of `continuation`.
    init(_ continuation: CheckedContinuation<Value, any Error>) {
        self.continuation = Mutex(continuation)
    }

    /// Resumes with `result` unless something else did.
    func resume(with result: Result<Value, any Error>) {
        let waiting = continuation.withLock { $0.take() }
        waiting?.resume(with: result)
    }
}
