import Foundation
import PortalDatabaseCore

/// Why the pool could not run a job; both map to 503 with `Retry-After`.
enum PoolError: Error, CustomStringConvertible {
    /// Every connection is busy and the wait queue is full.
    case saturated(queue: Int)
    /// Postgres cannot be reached.
    case unavailable(String)

    var description: String {
        switch self {
        case .saturated(let queue): "all database connections are busy and \(queue) requests are already waiting"
        case .unavailable(let message): "the database is unavailable: \(message)"
        }
    }
}

/// A bounded pool of libpq connections to one database. Jobs run on a dispatch queue (libpq
/// blocks), at most `size` at once; up to `maxWaiting` more wait in order; beyond that the
/// pool refuses at once (backpressure). A connection that failed is dropped and the next
/// job opens a new one, so the pool heals after a Postgres restart.
final class ConnectionPool: @unchecked Sendable {
    let conninfo: String
    let size: Int
    let maxWaiting: Int
    /// Runs once on every new connection (e.g. `SET statement_timeout`).
    private let prepare: (PGConnection) throws -> Void
    private let lock = NSLock()
    private var idle: [PGConnection] = []
    private var busy = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var closed = false
    /// Bumped when the schema changes; connections made under an older one drop their prepared statements.
    private var generation = 0
    private let queue = DispatchQueue(label: "meltybase.database.pool", attributes: .concurrent)

    init(conninfo: String, size: Int, maxWaiting: Int, prepare: @escaping (PGConnection) throws -> Void = { _ in }) {
        self.conninfo = conninfo
        self.size = max(1, size)
        self.maxWaiting = maxWaiting
        self.prepare = prepare
    }

    /// Runs `body` with a connection of its own; throws ``PoolError`` or the body's error.
    /// Checkout and work happen in one hop onto the pool's dispatch queue (libpq blocks).
    func run<T>(_ body: @escaping (PGConnection) throws -> T) async throws -> T {
        try await acquireSlot()
        return try await withCheckedThrowingContinuation { continuation in
            queue.async { [self] in continuation.resume(with: Result { try self.runBlocking(body) }) }
        }
    }

    private func runBlocking<T>(_ body: (PGConnection) throws -> T) throws -> T {
        var keep: PGConnection?
        defer { releaseSlot(keep) }
        var connection = try checkout()
        var retried = false
        while true {
            do {
                let value = try body(connection)
                keep = connection
                return value
            } catch let error as PGError where error.isConnectionFailure {
                // The server went away: every idle connection is as dead as this one.
                lock.withLock { idle.removeAll() }
                // A reused connection that failed on its first command ran nothing: run the
                // job once more on a new connection.
                if !retried && connection.reused && connection.commandsSent <= 1 {
                    retried = true
                    connection = try checkout()
                    continue
                }
                throw PoolError.unavailable(error.message)
            } catch {
                keep = connection.isHealthy ? connection : nil
                throw error
            }
        }
    }

    /// Marks prepared statements stale (DDL happened).
    func schemaChanged() { lock.withLock { generation += 1 } }

    /// Drops idle connections (instance destroyed).
    func close() {
        lock.withLock {
            closed = true
            idle.removeAll()
        }
    }

    private func acquireSlot() async throws {
        enum Decision { case go, wait, refuse }
        let decision: Decision = lock.withLock {
            if busy < size { busy += 1; return .go }
            if waiting.count >= maxWaiting { return .refuse }
            return .wait
        }
        switch decision {
        case .go: return
        case .refuse: throw PoolError.saturated(queue: maxWaiting)
        case .wait:
            await withCheckedContinuation { continuation in
                let resumeNow: Bool = lock.withLock {
                    if busy < size { busy += 1; return true }
                    waiting.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }

    private func releaseSlot(_ connection: PGConnection?) {
        let next: CheckedContinuation<Void, Never>? = lock.withLock {
            if let connection, !closed, connection.isHealthy, !connection.inTransaction { idle.append(connection) }
            if waiting.isEmpty {
                busy -= 1
                return nil
            }
            return waiting.removeFirst()   // the slot passes straight to the next waiter
        }
        next?.resume()
    }

    private func checkout() throws -> PGConnection {
        let current = lock.withLock { generation }
        while let connection = lock.withLock({ idle.popLast() }) {
            guard connection.isAlive else { continue }
            connection.commandsSent = 0
            connection.reused = true
            if connection.schemaGeneration != current { connection.resetPrepared(generation: current) }
            return connection
        }
        do {
            let connection = try PGConnection(conninfo: conninfo)
            connection.schemaGeneration = current
            try prepare(connection)
            connection.commandsSent = 0
            return connection
        } catch let error as PGError {
            throw PoolError.unavailable(error.message)
        }
    }
}
