import Foundation
import Synchronization

/// Why a pool could not run a job; both mean "try again shortly" (HTTP 503 + Retry-After).
public enum PostgresPoolError: Error, CustomStringConvertible, Sendable {
    /// Every connection is busy and the wait queue is full.
    case saturated(queue: Int)
    /// Postgres cannot be reached.
    case unavailable(String)

    /// What a client is told.
    public var description: String {
        switch self {
        case .saturated(let queue): "all database connections are busy and \(queue) requests are already waiting"
        case .unavailable(let message): "the database is unavailable: \(message)"
        }
    }

    /// Seconds a client should wait before trying again (the `Retry-After` header).
    public var retryAfterSeconds: Int {
        switch self {
        case .saturated: 1
        case .unavailable: 2
        }
    }
}

/// A bounded pool of non-blocking connections to one database, shared by every user of that
/// database in one owner (kernel or plugin). At most `size` jobs hold a connection; up to
/// `maxWaiting` more wait in order; beyond that the pool refuses at once (backpressure).
/// A broken connection is dropped and replaced; after a failed connect the pool waits a
/// growing backoff (up to one second) before trying Postgres again, answering
/// ``PostgresPoolError/unavailable(_:)`` meanwhile.
public final class PostgresPool: Sendable {
    /// The database's conninfo.
    public let conninfo: String
    /// The most connections open at once.
    public let size: Int
    /// The most jobs waiting for a connection.
    public let maxWaiting: Int
    private let loop: PostgresEventLoop
    /// Runs once on every new connection (e.g. `SET statement_timeout`).
    private let prepare: @Sendable (PostgresConnection) async throws -> Void

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var idle: [PostgresConnection] = []
        var busy = 0
        var waiting: [Waiter] = []
        var nextWaiterID: UInt64 = 0
        var closed = false
        /// Bumped when the schema changes; connections made under an older one drop their prepared statements.
        var generation = 0
        /// After a failed connect: no new attempt before this time; the backoff doubles per failure.
        var retryAt: ContinuousClock.Instant?
        var backoff: Duration = .milliseconds(50)
        var lastFailure = ""
    }
    private let state = Mutex(State())

    /// A pool on `conninfo` whose connections `loop` drives.
    public init(
        conninfo: String, size: Int, maxWaiting: Int, loop: PostgresEventLoop,
        prepare: @escaping @Sendable (PostgresConnection) async throws -> Void = { _ in }
    ) {
        self.conninfo = conninfo
        self.size = max(1, size)
        self.maxWaiting = max(0, maxWaiting)
        self.loop = loop
        self.prepare = prepare
    }

    /// Runs `body` with a connection of its own; throws ``PostgresPoolError`` or the body's
    /// error. A reused connection that failed on its first command (the server restarted
    /// meanwhile) ran nothing: the job runs once more on a new connection.
    public func run<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await acquireSlot()
        var keep: PostgresConnection?
        defer { releaseSlot(keep) }
        var connection = try await checkout()
        var retried = false
        while true {
            do {
                let value = try await body(connection)
                keep = connection
                return value
            } catch let error as PostgresError where error.isConnectionFailure {
                // The server went away: every idle connection is as dead as this one.
                let dropped = state.withLock { state in
                    defer { state.idle.removeAll() }
                    return state.idle
                }
                dropped.forEach { $0.close() }
                if !retried && connection.reused && connection.commandsSent <= 1 {
                    retried = true
                    connection.close()
                    connection = try await checkout()
                    continue
                }
                connection.close()
                throw PostgresPoolError.unavailable(error.message)
            } catch {
                keep = connection.isHealthy ? connection : nil
                throw error
            }
        }
    }

    /// Marks prepared statements stale (DDL happened).
    public func schemaChanged() { state.withLock { $0.generation += 1 } }

    /// Closes idle connections and refuses new jobs (with ``PostgresPoolError/unavailable(_:)``).
    public func close() {
        let (idle, waiting) = state.withLock { state in
            state.closed = true
            defer {
                state.idle.removeAll()
                state.waiting.removeAll()
            }
            return (state.idle, state.waiting)
        }
        idle.forEach { $0.close() }
        waiting.forEach { $0.continuation.resume(throwing: PostgresPoolError.unavailable("the pool is closed")) }
    }

    /// Connections open now: (idle, busy), for tests and `/metrics`.
    public var counts: (idle: Int, busy: Int, waiting: Int) {
        state.withLock { ($0.idle.count, $0.busy, $0.waiting.count) }
    }

    private func acquireSlot() async throws {
        enum Decision { case go, wait, refuse, closed }
        let decision: Decision = state.withLock { state in
            if state.closed { return .closed }
            if state.busy < size {
                state.busy += 1
                return .go
            }
            if state.waiting.count >= maxWaiting { return .refuse }
            return .wait
        }
        switch decision {
        case .go: return
        case .refuse: throw PostgresPoolError.saturated(queue: maxWaiting)
        case .closed: throw PostgresPoolError.unavailable("the pool is closed")
        case .wait:
            let id = state.withLock { state in
                state.nextWaiterID += 1
                return state.nextWaiterID
            }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let resumeNow: Bool = state.withLock { state in
                        if state.busy < size {
                            state.busy += 1
                            return true
                        }
                        state.waiting.append(Waiter(id: id, continuation: continuation))
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                // A waiter whose task was cancelled (its client left) gives up its place.
                let waiter = state.withLock { state -> Waiter? in
                    guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiting.remove(at: index)
                }
                waiter?.continuation.resume(throwing: CancellationError())
            }
        }
    }

    private func releaseSlot(_ connection: PostgresConnection?) {
        let (next, surplus): (Waiter?, PostgresConnection?) = state.withLock { state in
            var surplus: PostgresConnection?
            if let connection {
                if !state.closed, connection.isHealthy, !connection.inTransaction { state.idle.append(connection) } else { surplus = connection }
            }
            if state.waiting.isEmpty {
                state.busy -= 1
                return (nil, surplus)
            }
            return (state.waiting.removeFirst(), surplus)  // the slot passes straight to the next waiter
        }
        surplus?.close()
        next?.continuation.resume()
    }

    private func checkout() async throws -> PostgresConnection {
        let current = state.withLock { $0.generation }
        while let connection = state.withLock({ $0.idle.popLast() }) {
            guard connection.isAlive else {
                connection.close()
                continue
            }
            connection.commandsSent = 0
            connection.reused = true
            if connection.schemaGeneration != current { await connection.resetPrepared(generation: current) }
            return connection
        }
        let wait: String? = state.withLock { state in
            guard let retryAt = state.retryAt, ContinuousClock.now < retryAt else { return nil }
            return state.lastFailure
        }
        if let wait { throw PostgresPoolError.unavailable(wait) }
        do {
            let connection = try await PostgresConnection.connect(conninfo, on: loop)
            connection.schemaGeneration = current
            try await prepare(connection)
            connection.commandsSent = 0
            state.withLock { state in
                state.retryAt = nil
                state.backoff = .milliseconds(50)
            }
            return connection
        } catch let error as PostgresError {
            state.withLock { state in
                state.lastFailure = error.message
                state.retryAt = ContinuousClock.now + state.backoff
                state.backoff = min(state.backoff * 2, .seconds(1))
            }
            throw PostgresPoolError.unavailable(error.message)
        }
    }
}
