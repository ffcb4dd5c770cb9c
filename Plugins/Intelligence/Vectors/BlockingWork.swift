import Foundation

/// Runs blocking work (index builds, searches over large graphs, snapshot files) on
/// Dispatch's global queue, never on the cooperative pool.
enum BlockingWork {
    /// The result of `body`, run off the cooperative pool.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
        }
    }
}
