import Dispatch
import Synchronization

/// A serial task executor on a dispatch queue of its own, for synchronous callers that must
/// wait for async Postgres work (the plugin ABI's `audit`, the embedded Postgres start-up
/// probe): the work runs as a task preferring this executor, so it never needs a thread of
/// the cooperative pool that the waiting caller may itself be holding.
public final class BlockingBridge: TaskExecutor, Sendable {
    private let queue: DispatchQueue

    /// A bridge whose work runs on a serial dispatch queue named `label`.
    public init(label: String) {
        queue = DispatchQueue(label: label)
    }

    /// Runs `job` on the bridge's queue.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    /// Runs `operation` as a task preferring this executor and blocks the caller until it returned.
    public func runBlocking<T: Sendable>(_ operation: @escaping @Sendable () async -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<T?>(nil)
        Task(executorPreference: self) {
            let value = await operation()
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }
}

/// One-off Postgres work for synchronous code (start-up probes, test set-up): a connection
/// on an event loop of its own, closed and stopped when `body` returns. Blocks the caller.
public enum BlockingPostgres {
    /// Connects to `conninfo`, runs `body`, closes; rethrows what failed.
    public static func run<T: Sendable>(_ conninfo: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws -> T {
        let loop = PostgresEventLoop(name: "meltybase-postgres-oneoff")
        defer { loop.shutdown() }
        let bridge = BlockingBridge(label: "meltybase.postgres-oneoff")
        let result: Result<T, any Error> = bridge.runBlocking {
            do {
                let connection = try await PostgresConnection.connect(conninfo, on: loop)
                defer { connection.close() }
                return .success(try await body(connection))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
