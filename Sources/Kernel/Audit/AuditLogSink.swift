import Foundation
import NIOConcurrencyHelpers
import Synchronization

/// The ``AuditSink`` that writes plugins' audit calls into the hash-chained log on the
/// system database.
///
/// Group commit: a call that finds no write in progress writes its entry, plus every entry
/// that arrives meanwhile, in one transaction (``AuditChain/appendAllCommitting(on:entries:)``);
/// calls arriving during a write wait for the next one. Each call still returns only once
/// its entry is committed (or throws), in arrival order, so a vault read stays "audited
/// before the value is released"; a burst of reads costs one commit instead of one each.
public final class AuditLogSink: AuditSink, Sendable {
    /// Where entries are appended.
    public let database: SystemDatabase

    /// An entry waiting for a write, and how its caller learns the outcome (or its turn to write).
    private final class Ticket: Sendable {
        let entry: AuditChain.PendingEntry
        let wake = DispatchSemaphore(value: 0)
        private let state = Mutex<(finished: Bool, turnToWrite: Bool, failure: (any Error)?)>((false, false, nil))
        init(_ entry: AuditChain.PendingEntry) { self.entry = entry }

        var finished: Bool { state.withLock { $0.finished } }
        var failure: (any Error)? { state.withLock { $0.failure } }
        func finish(_ failure: (any Error)?) { state.withLock { $0 = (true, $0.turnToWrite, failure) } }
        func giveTurn() { state.withLock { $0.turnToWrite = true } }
        /// Whether the previous writer handed over; clears the flag.
        func takeTurn() -> Bool {
            state.withLock { state in
                defer { state.turnToWrite = false }
                return state.turnToWrite
            }
        }
    }

    private let queue = NIOLockedValueBox<(waiting: [Ticket], writing: Bool)>(([], false))

    /// A sink appending to `database`.
    public init(database: SystemDatabase) {
        self.database = database
    }

    /// Appends and commits one entry; throws ``AuditError`` for details that are not a
    /// JSON object, ``PostgresError`` when the database is unavailable. Blocks the calling
    /// thread until the entry is committed.
    public func append(actor: String, action: String, target: String, portal: String?, detailsJSON: String) throws {
        let details = try CanonicalJSON(parsing: detailsJSON.isEmpty ? "{}" : detailsJSON)
        guard case .object = details else { throw AuditError("audit details must be a JSON object") }
        let ticket = Ticket(AuditChain.PendingEntry(actor: actor, action: action, target: target, portal: portal, details: details))
        var writes = queue.withLockedValue { state -> Bool in
            state.waiting.append(ticket)
            if state.writing { return false }
            state.writing = true
            return true
        }
        while !ticket.finished {
            if writes {
                writeBatch(by: ticket)
            } else {
                ticket.wake.wait()
                if ticket.takeTurn() { writes = true }
            }
        }
        if let failure = ticket.failure { throw failure }
    }

    /// Writes everything waiting (the writer's own entry included) in one transaction, wakes
    /// those callers, and hands the next write to the first caller that arrived meanwhile, so
    /// no caller keeps writing for others after its own entry is stored.
    private func writeBatch(by writer: Ticket) {
        let batch = queue.withLockedValue { state -> [Ticket] in
            defer { state.waiting = [] }
            return state.waiting
        }
        var failure: Error?
        do {
            _ = try database.withConnectionSync { connection in
                try AuditChain.appendAllCommitting(on: connection, entries: batch.map(\.entry))
            }
        } catch {
            failure = error
        }
        for ticket in batch {
            ticket.finish(failure)
            if ticket !== writer { ticket.wake.signal() }
        }
        let next = queue.withLockedValue { state -> Ticket? in
            guard let first = state.waiting.first else {
                state.writing = false
                return nil
            }
            return first
        }
        if let next {
            next.giveTurn()
            next.wake.signal()
        }
    }
}
