import Dispatch
import Foundation
import MeltyJSON
import Synchronization

/// The ``AuditSink`` that writes plugins' audit calls into the hash-chained log on the
/// system database.
///
/// Group commit: a call that finds no write in progress writes its entry, plus every entry
/// that arrives meanwhile, in one transaction (``AuditChain/appendAllCommitting(on:entries:)``);
/// calls arriving during a write wait for the next one. Each call still returns only once
/// its entry is committed (or throws), in arrival order, so a plugin's audited read stays
/// "audited before the value is released"; a burst of reads costs one commit instead of one each.
///
/// Nothing waits on a thread for the write: ``append(actor:action:target:portal:detailsJSON:completion:)``
/// (the ABI's `audit_async`) queues the entry and returns; a writer task drains the queue in
/// batches and calls each completion after its batch committed. The synchronous ABI `audit`
/// call waits on a semaphore for the same completion. The writer runs on this sink's own
/// serial executor (a dispatch queue, not the cooperative pool), so callers blocked on
/// cooperative threads can never starve the write they wait for.
public final class AuditLogSink: AuditSink, Sendable {
    /// Where entries are appended.
    public let database: SystemDatabase

    /// An entry waiting for a write and whom to tell.
    private struct Waiting {
        let entry: AuditChain.PendingEntry
        let completion: @Sendable ((any Error)?) -> Void
    }

    private struct Queue {
        var waiting: [Waiting] = []
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
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<(any Error)?>(nil)
        append(actor: actor, action: action, target: target, portal: portal, detailsJSON: detailsJSON) { failure in
            outcome.withLock { $0 = failure }
            done.signal()
        }
        done.wait()
        if let failure = outcome.withLock({ $0 }) { throw failure }
    }

    /// Queues one entry and returns at once; `completion` gets nil once the entry is
    /// committed, or the error (bad details, database unavailable).
    public func append(
        actor: String, action: String, target: String, portal: String?, detailsJSON: String,
        completion: @escaping @Sendable ((any Error)?) -> Void
    ) {
        let details: CanonicalJSON
        do {
            details = try CanonicalJSON.auditDetails(parsing: detailsJSON.isEmpty ? "{}" : detailsJSON)
            guard case .object = details else { throw AuditError("audit details must be a JSON object") }
        } catch {
            completion(error)
            return
        }
        let entry = AuditChain.PendingEntry(actor: actor, action: action, target: target, portal: portal, details: details)
        let startWriter = queue.withLock { state -> Bool in
            state.waiting.append(Waiting(entry: entry, completion: completion))
            if state.writing { return false }
            state.writing = true
            return true
        }
        if startWriter { Task(executorPreference: writer) { await self.drain() } }
    }

    /// Writes batches until the queue is empty: everything waiting goes into one transaction.
    private func drain() async {
        while true {
            let batch = queue.withLock { state -> [Waiting] in
                if state.waiting.isEmpty { state.writing = false }
                defer { state.waiting = [] }
                return state.waiting
            }
            if batch.isEmpty { return }
            var failure: (any Error)?
            do {
                let entries = batch.map(\.entry)
                _ = try await database.withConnection { connection in
                    try await AuditChain.appendAllCommitting(on: connection, entries: entries)
                }
            } catch {
                failure = error
            }
            for waiting in batch { waiting.completion(failure) }
        }
    }
}
