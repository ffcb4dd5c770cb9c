import Foundation
import IntelligenceVectors
import MeltyPostgres
import Synchronization

/// One collection's HNSW index in memory, kept in step with Postgres: every query and every
/// write first applies the changes after ``through`` (one indexed query, usually empty).
final class LoadedCollection: Sendable {
    /// The collection's uid.
    let uid: Int64
    /// The collection's name.
    let name: String
    /// The index.
    let index: VectorIndex
    /// Serialises catching up and saving, so changes apply in order.
    let gate = SerialGate()

    private struct State {
        var through: Int64
        var savedThrough: Int64
    }

    private let state: Mutex<State>
    /// The collection's `pruned_through` read before this index read anything: deletions up
    /// to it removed entries before the index could see them, so only a prune past it (and
    /// past ``through``) can have taken deletions the index needs.
    let prunedBaseline: Int64

    /// An index that has applied every change up to `through` (`saved`: its snapshot says so
    /// too), started when the collection's `pruned_through` was `prunedBaseline`.
    init(uid: Int64, name: String, index: VectorIndex, through: Int64, saved: Bool, prunedBaseline: Int64) {
        self.uid = uid
        self.name = name
        self.index = index
        self.prunedBaseline = prunedBaseline
        state = Mutex(State(through: through, savedThrough: saved ? through : -1))
    }

    /// The last change applied.
    var through: Int64 { state.withLock { $0.through } }

    /// Whether changes were applied since the last snapshot.
    var isDirty: Bool { state.withLock { $0.through != $0.savedThrough } }

    /// Applies every change after ``through``; returns whether anything changed.
    @discardableResult
    func catchUp(_ owner: PostgresPool) async throws -> Bool {
        try await gate.run { try await applyChanges(owner) }
    }

    /// Applies changes page by page (the caller holds the gate).
    func applyChanges(_ owner: PostgresPool) async throws -> Bool {
        var changed = false
        while true {
            let after = through
            let changes = try await owner.run { connection in try await VectorStore.changes(collection: uid, after: after, connection) }
            // Another kernel's snapshot pruned deletions this index had not applied yet: some
            // removed entries may still be in it. (An empty index, after 0, has nothing to miss.)
            if after > 0 && changes.prunedThrough > max(after, prunedBaseline) {
                throw StaleIndex(collection: name, through: after, prunedThrough: changes.prunedThrough)
            }
            if changes.removed.isEmpty && changes.written.isEmpty && changes.through == after { return changed }
            let index = index
            let removed = changes.removed
            let written = changes.written.map { (label: $0.label, vector: $0.vector) }
            try await BlockingWork.run {
                for label in removed where index.contains(label: label) { try index.remove(label: label) }
                if !written.isEmpty { try index.upsert(batch: written) }
            }
            state.withLock { $0.through = changes.through }
            changed = true
            if !changes.more { return changed }
        }
    }

    /// The index is behind deletions another kernel already pruned: rebuild it from Postgres.
    struct StaleIndex: Error, CustomStringConvertible {
        let collection: String
        let through: Int64
        let prunedThrough: Int64
        var description: String {
            "the index of collection \(collection) is at change \(through), but deletions through \(prunedThrough) were pruned by another kernel's snapshot"
        }
    }

    /// Writes the snapshot and its record (blocking; the caller holds the gate or is closing).
    func save(indexPath: String, recordPath: String, dimension: Int, metric: String) throws -> Int64 {
        let covered = through
        let directory = (indexPath as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try index.save(to: indexPath)
        try SnapshotRecord(uid: uid, through: covered, count: index.count, dimension: dimension, metric: metric).write(to: recordPath)
        state.withLock { $0.savedThrough = covered }
        return covered
    }
}
