import Foundation
import MeltyPostgres
import VaultCore

/// A few libpq connections to the system database, each on its own serial queue, so the
/// blocking Postgres and audit calls never run on the kernel's cooperative threads.
final class DatabaseWorkers: @unchecked Sendable {
    private final class Worker: @unchecked Sendable {
        let queue: DispatchQueue
        var connection: PostgresConnection?
        init(index: Int) { queue = DispatchQueue(label: "meltybase.vault.db-\(index)") }
    }

    private let conninfo: String
    private let workers: [Worker]
    private let next = NSLock()
    private var counter = 0
    private var migrated = false

    /// `count` workers on `conninfo`; connections open on first use and reopen after failures.
    init(conninfo: String, count: Int) {
        self.conninfo = conninfo
        workers = (0..<max(1, count)).map(Worker.init(index:))
    }

    /// Runs `body` on a worker with a live connection.
    func run<T>(_ body: @escaping (PostgresConnection) throws -> T) async throws -> T {
        let worker = next.withLock { () -> Worker in
            counter &+= 1
            return workers[counter % workers.count]
        }
        return try await withCheckedThrowingContinuation { continuation in
            worker.queue.async {
                continuation.resume(with: Result { try self.execute(body, on: worker) })
            }
        }
    }

    private func execute<T>(_ body: (PostgresConnection) throws -> T, on worker: Worker) throws -> T {
        if worker.connection?.isHealthy != true {
            do {
                worker.connection = try PostgresConnection(conninfo: conninfo)
            } catch {
                throw VaultError.database("cannot reach the system database: \(error)")
            }
        }
        // The vault schema is created on first use of each database (idempotent DDL).
        if !next.withLock({ migrated }) {
            try VaultSchema.migrate(on: worker.connection!)
            next.withLock { migrated = true }
        }
        do {
            return try body(worker.connection!)
        } catch {
            if worker.connection?.isHealthy != true { worker.connection = nil }
            throw error
        }
    }

    /// Closes every connection (after in-flight work finished).
    func close() {
        for worker in workers { worker.queue.sync { worker.connection = nil } }
    }
}

/// One ``DatabaseWorkers`` per Postgres server the plugin's portals live on: the host
/// answers `postgres_conninfo` per portal (a test process runs several kernels, each on
/// its own system database).
final class DatabasePools: @unchecked Sendable {
    private let lock = NSLock()
    private var pools: [String: DatabaseWorkers] = [:]
    private let connectionsPerPool: Int

    init(connectionsPerPool: Int) {
        self.connectionsPerPool = connectionsPerPool
    }

    /// The workers for `conninfo`, created on first use.
    func workers(for conninfo: String) -> DatabaseWorkers {
        lock.withLock {
            if let existing = pools[conninfo] { return existing }
            let created = DatabaseWorkers(conninfo: conninfo, count: connectionsPerPool)
            pools[conninfo] = created
            return created
        }
    }

    /// Closes every pool.
    func close() {
        for pool in lock.withLock({ Array(pools.values) }) { pool.close() }
    }
}
