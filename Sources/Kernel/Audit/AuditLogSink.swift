import Dispatch
import Foundation
import Synchronization

/// The ``AuditSink`` that writes plugins' audit calls into the hash-chained log on the
/// system database.
///
/// Group commit: a call that finds no write in progress writes its entry, plus every entry
/// that arrives meanwhile, in one transaction (``AuditChain/appendAllCommitting(on:entries:)``);
/// calls arriving during a write wait for the next one. Each call still returns only once
/// its entry is committed (or throws), in arrival order, so a vault read stays "audited
/// before the value is released"; a burst of reads costs one commit instead of one each.
///
/// The plugin ABI's `audit` call is synchronous, so the calling thread waits; the write
/// itself is a task on this sink's own serial executor (a dispatch queue, not the
/// cooperative pool), so callers blocked on cooperative threads can never starve the write
/// they wait for.
public final class AuditLogSink: AuditSink, Sendable {
    /// Where entries are appended.
    public let database: SystemDatabase

    /// An entry waiting for a write, and how its caller learns the outcome (or its turn to write).
    private final class Ticket: Sendable {
        struct Outcome {
            var finished = false
            var turnToWrite = false
            var failure: (any Error)?
        }
        let entry: AuditChain.PendingEntry
        let wake = DispatchSemaphore(value: 0)
        let outcome = Mutex(Outcome())
        init(_ entry: AuditChain.PendingEntry) { self.entry = entry }
    }

    private struct Queue {
        var waiting: [Ticket] = []
        var writing = false
    }
    private let queue = Mutex(Queue())
    private let writer = BlockingBridge(label: "meltybase.audit-writer")

    /// A sink appending to `database`.
    public init(database: SystemDatabase) {
        self.database = database
    }

    /// Appends and commits one entry; throws ``AuditError`` for details that are not a
    /// JSON object, ``PostgresError`` or ``PostgresPoolError`` when the database is
    /// unavailable. Blocks the calling thread until the entry is committed.
    public func append(actor: String, action: String, target: String, portal: String?, detailsJSON: String) throws {
        let details = try CanonicalJSON(parsing: detailsJSON.isEmpty ? "{}" : detailsJSON)
        guard case .object = details else { throw AuditError("audit details must be a JSON object") }
        let ticket = Ticket(AuditChain.PendingEntry(actor: actor, action: action, target: target, portal: portal, details: details))
        var writes = queue.withLock { state -> Bool in
            state.waiting.append(ticket)
            if state.writing { return false }
            state.writing = true
            return true
        }
        while true {
            if ticket.outcome.withLock({ $0.finished }) { break }
            if writes {
                writeBatch(by: ticket)
            } else {
                ticket.wake.wait()
                writes = ticket.outcome.withLock { outcome in
                    defer { outcome.turnToWrite = false }
                    return outcome.turnToWrite
                }
            }
        }
        if let failure = ticket.outcome.withLock({ $0.failure }) { throw failure }
    }

    /// Writes everything waiting (the writer's own entry included) in one transaction, wakes
    /// those callers, and hands the next write to the first caller that arrived meanwhile, so
    /// no caller keeps writing for others after its own entry is stored.
    private func writeBatch(by writerTicket: Ticket) {
        let batch = queue.withLock { state -> [Ticket] in
            defer { state.waiting = [] }
            return state.waiting
        }
        let entries = batch.map(\.entry)
        let database = database
        let failure: (any Error)? = writer.runBlocking {
            do {
                _ = try await database.withConnection { connection in
                    try await AuditChain.appendAllCommitting(on: connection, entries: entries)
                }
                return nil
            } catch {
                return error
            }
        }
        for ticket in batch {
            ticket.outcome.withLock {
                $0.failure = failure
                $0.finished = true
            }
            if ticket !== writerTicket { ticket.wake.signal() }
        }
        let next = queue.withLock { state -> Ticket? in
            guard let first = state.waiting.first else {
                state.writing = false
                return nil
            }
            return first
        }
        if let next {
            next.outcome.withLock { $0.turnToWrite = true }
            next.wake.signal()
        }
    }
}
