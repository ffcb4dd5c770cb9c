import Foundation
import IntelligenceVectors
import MeltyPluginSDK
import MeltyPostgres
import Synchronization

/// One portal's Knowledge Mesh state (loaded indexes); closed with the portal.
///
/// Postgres is the source of truth. A collection's index is loaded on first use: from its
/// snapshot when the snapshot belongs to this incarnation of the collection and the changes
/// after it are still known (then those are applied), otherwise rebuilt from the rows. After
/// loading, the index must hold exactly as many entries as Postgres, or it is rebuilt.
/// Snapshots are written a moment after changes (debounced) and when the portal closes.
final class PortalVectors: Sendable {
    /// The kernel's services (logs, counters, the system database).
    let host: PluginHostServices
    /// The portal.
    let portal: Portal
    /// The portal database as its owner role.
    let owner: PostgresPool
    /// The Knowledge Mesh's settings.
    let settings: VectorSettings
    /// `<index_dir>/<portal>`.
    let directory: String
    /// The mesh hub's connections, shared by the kernel's portals.
    let hub: MeshHubPool

    private struct State {
        var loaded: [String: LoadedCollection] = [:]
        /// When each loaded index was last used (the least recently used is unloaded first).
        var lastUsed: [String: ContinuousClock.Instant] = [:]
        var pendingSnapshots: [String: Task<Void, Never>] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    /// Serialises loads (two first queries of one collection build it once).
    private let loading = SerialGate()

    /// Nothing is loaded until a collection is first used.
    init(host: PluginHostServices, portal: Portal, owner: PostgresPool, settings: VectorSettings, hub: MeshHubPool) {
        self.host = host
        self.hub = hub
        self.portal = portal
        self.owner = owner
        self.settings = settings
        let safe = String(portal.name.unicodeScalars.filter { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_") })
        directory = settings.indexDirectory + "/" + (safe.isEmpty ? "portal" : safe)
    }

    /// Where a collection's snapshot and its record live.
    func paths(of name: String) -> (index: String, record: String) {
        (directory + "/" + name + ".hnsw", directory + "/" + name + ".json")
    }

    /// The collection's index, loaded (or rebuilt) if needed and brought up to date. Loading
    /// first unloads the least recently used indexes while the portal's would exceed
    /// `index_memory_mb`; a collection that alone exceeds it is refused.
    func index(for collection: VectorCollection) async throws -> LoadedCollection {
        if let loaded = cached(collection) {
            do {
                if try await loaded.catchUp(owner) { await trim(keeping: collection.name) }
                return loaded
            } catch let stale as LoadedCollection.StaleIndex {
                host.log(.notice, "intelligence: \(stale); rebuilding", portal: portal)
                evict(collection.name, uid: loaded.uid)
            }
        }
        let loaded = try await loading.run {
            if let loaded = cached(collection) { return loaded }
            try await makeRoom(for: collection)
            let loaded = try await load(collection)
            // A query looks the collection up without counting it: judge the loaded index.
            let size = Self.estimate(loaded)
            guard size <= settings.indexMemoryBytes else {
                throw Self.tooLarge(collection.name, entries: loaded.index.count, dimension: loaded.index.dimension, bytes: size, budget: settings.indexMemoryBytes)
            }
            try await makeRoom(bytes: size)
            state.withLock {
                $0.loaded[collection.name] = loaded
                $0.lastUsed[collection.name] = .now
            }
            return loaded
        }
        do {
            _ = try await loaded.catchUp(owner)
        } catch let stale as LoadedCollection.StaleIndex {
            // Pruned while this request waited: the next request rebuilds.
            evict(collection.name, uid: loaded.uid)
            throw stale
        }
        await trim(keeping: collection.name)
        return loaded
    }

    /// Drops the loaded index of `name` if it is still the one with `uid`.
    private func evict(_ name: String, uid: Int64) {
        state.withLock { state in
            guard state.loaded[name]?.uid == uid else { return }
            state.loaded[name] = nil
            state.lastUsed[name] = nil
        }
    }

    /// The estimated memory of a loaded index.
    private static func estimate(_ loaded: LoadedCollection) -> Int {
        VectorCollectionLimits.estimatedIndexBytes(entries: loaded.index.count, dimension: loaded.index.dimension)
    }

    /// Refuses a collection larger than the budget; unloads the least recently used indexes
    /// (writing the snapshots of changed ones) until it fits beside the others.
    private func makeRoom(for collection: VectorCollection) async throws {
        let needed = VectorCollectionLimits.estimatedIndexBytes(entries: collection.count, dimension: collection.dimension)
        guard needed <= settings.indexMemoryBytes else {
            throw Self.tooLarge(collection.name, entries: collection.count, dimension: collection.dimension, bytes: needed, budget: settings.indexMemoryBytes)
        }
        try await makeRoom(bytes: needed)
    }

    /// Unloads the least recently used indexes until `bytes` more fit.
    private func makeRoom(bytes needed: Int) async throws {
        await unload(until: settings.indexMemoryBytes - needed, keeping: nil)
    }

    /// The 409 for a collection whose index alone exceeds the budget.
    private static func tooLarge(_ name: String, entries: Int, dimension: Int, bytes: Int, budget: Int) -> VectorInput {
        VectorInput(
            response: .error(
                status: 409, code: "index_memory_exceeded",
                message:
                    "the index of collection \"\(name)\" (\(entries) entries of \(dimension) dimensions) needs about \(bytes >> 20) MiB; this portal's indexes may take \(budget >> 20) MiB",
                hint: "delete entries, or raise [plugins.intelligence.config] index_memory_mb"))
    }

    /// After an index grew: unloads the least recently used others while the portal's
    /// loaded indexes exceed the budget.
    private func trim(keeping name: String) async {
        await unload(until: settings.indexMemoryBytes, keeping: name)
    }

    /// Unloads the least recently used indexes (never `keeping`) until the loaded ones take
    /// at most `budget` bytes, writing the snapshots of changed ones.
    private func unload(until budget: Int, keeping: String?) async {
        while true {
            let victim = state.withLock { state -> LoadedCollection? in
                let used = state.loaded.values.reduce(0) { total, loaded in
                    let sum = total.addingReportingOverflow(Self.estimate(loaded))
                    return sum.overflow ? Int.max : sum.partialValue
                }
                guard used > budget else { return nil }
                let candidates = state.loaded.keys.filter { $0 != keeping }
                guard let name = candidates.min(by: { (state.lastUsed[$0] ?? .now) < (state.lastUsed[$1] ?? .now) }) else { return nil }
                let unloaded = state.loaded.removeValue(forKey: name)
                state.lastUsed[name] = nil
                state.pendingSnapshots.removeValue(forKey: name)?.cancel()
                return unloaded
            }
            guard let victim else { return }
            host.log(.info, "intelligence: unloading the index of collection \(victim.name) to stay within index_memory_mb", portal: portal)
            if victim.isDirty { await snapshot(victim, dimension: victim.index.dimension, metric: victim.index.metric.rawValue) }
        }
    }

    /// Whether a collection of `entries` vectors of `dimension` fits the portal's budget on its own.
    func fits(entries: Int, dimension: Int) -> Bool {
        VectorCollectionLimits.estimatedIndexBytes(entries: entries, dimension: dimension) <= settings.indexMemoryBytes
    }

    private func cached(_ collection: VectorCollection) -> LoadedCollection? {
        state.withLock { state in
            guard let loaded = state.loaded[collection.name] else { return nil }
            if loaded.uid == collection.uid {
                state.lastUsed[collection.name] = .now
                return loaded
            }
            state.loaded[collection.name] = nil
            state.lastUsed[collection.name] = nil
            return nil
        }
    }

    private func load(_ collection: VectorCollection) async throws -> LoadedCollection {
        guard let metric = VectorMetric(rawValue: collection.metric) else {
            throw VectorStoreError.limitExceeded("the collection's metric \(collection.metric) is unknown")
        }
        let paths = paths(of: collection.name)
        let record = try await BlockingWork.run { SnapshotRecord.read(at: paths.record) }
        if let record, record.uid == collection.uid, record.dimension == collection.dimension,
            record.metric == collection.metric, record.through >= collection.prunedThrough
        {
            let dimension = collection.dimension
            do {
                let index = try await BlockingWork.run { try VectorIndex.load(from: paths.index, dimension: dimension, metric: metric) }
                let loaded = LoadedCollection(
                    uid: collection.uid, name: collection.name, index: index, through: record.through, saved: true, prunedBaseline: collection.prunedThrough)
                try await loaded.catchUp(owner)
                let expected = try await owner.run { connection in try await VectorStore.state(collection: collection.uid, connection) }
                if index.count == expected.count {
                    host.log(.info, "intelligence: loaded the snapshot of collection \(collection.name) (\(index.count) entries)", portal: portal)
                    return loaded
                }
                host.log(
                    .warning, "intelligence: the snapshot of collection \(collection.name) holds \(index.count) entries, Postgres \(expected.count); rebuilding",
                    portal: portal)
            } catch {
                host.log(.warning, "intelligence: the snapshot of collection \(collection.name) is unusable (\(error)); rebuilding", portal: portal)
            }
        }
        // A rebuild that another kernel's prune overtakes page by page starts again (bounded).
        for attempt in 1...3 {
            host.count("vector_index_rebuilds", portal: portal)
            let index = try VectorIndex(dimension: collection.dimension, metric: metric, capacity: max(1_024, min(collection.count + 64, 1 << 24)))
            let baseline = try await owner.run { connection in try await VectorStore.prunedThrough(collection: collection.uid, connection) }
            let loaded = LoadedCollection(uid: collection.uid, name: collection.name, index: index, through: 0, saved: false, prunedBaseline: baseline)
            do {
                try await loaded.catchUp(owner)
            } catch let stale as LoadedCollection.StaleIndex where attempt < 3 {
                host.log(.notice, "intelligence: \(stale) during a rebuild; starting again", portal: portal)
                continue
            }
            scheduleSnapshot(of: loaded, dimension: collection.dimension, metric: collection.metric)
            return loaded
        }
        // Not reached: the third attempt's StaleIndex propagates (503, retry).
        throw LoadedCollection.StaleIndex(collection: collection.name, through: 0, prunedThrough: collection.prunedThrough)
    }

    /// Writes the collection's snapshot after the configured delay (later changes share it).
    func scheduleSnapshot(of loaded: LoadedCollection, dimension: Int, metric: String) {
        let delay = settings.snapshotDelay
        state.withLock { current in
            guard !current.closed, current.pendingSnapshots[loaded.name] == nil else { return }
            current.pendingSnapshots[loaded.name] = Task.detached { [self] in
                try? await Task.sleep(for: delay)
                self.state.withLock { _ = $0.pendingSnapshots.removeValue(forKey: loaded.name) }
                guard !Task.isCancelled else { return }
                await self.snapshot(loaded, dimension: dimension, metric: metric)
            }
        }
    }

    private func snapshot(_ loaded: LoadedCollection, dimension: Int, metric: String) async {
        let paths = paths(of: loaded.name)
        do {
            let covered = try await loaded.gate.run {
                try await BlockingWork.run { try loaded.save(indexPath: paths.index, recordPath: paths.record, dimension: dimension, metric: metric) }
            }
            try await owner.run { connection in try await VectorStore.pruneDeletions(collection: loaded.uid, through: covered, connection) }
        } catch {
            host.log(.warning, "intelligence: could not write the snapshot of collection \(loaded.name): \(error)", portal: portal)
        }
    }

    /// Forgets a dropped collection and deletes its snapshot.
    func forget(_ name: String) {
        state.withLock { state in
            state.loaded[name] = nil
            state.lastUsed[name] = nil
            state.pendingSnapshots.removeValue(forKey: name)?.cancel()
        }
        // Off the cooperative pool; a snapshot that outlives this is ignored (its uid is the old one).
        let paths = paths(of: name)
        DispatchQueue.global().async {
            try? FileManager.default.removeItem(atPath: paths.record)
            try? FileManager.default.removeItem(atPath: paths.index)
        }
    }

    /// The kernel's system database (the mesh hub), with its schema installed: the pool this
    /// kernel's portals share.
    func mesh() async throws -> PostgresPool {
        try await hub.pool()
    }

    /// Stops background work, writes the snapshots of changed indexes and releases them.
    func close() {
        let (loaded, pending) = state.withLock { state in
            state.closed = true
            defer {
                state.loaded = [:]
                state.pendingSnapshots = [:]
            }
            return (Array(state.loaded.values), Array(state.pendingSnapshots.values))
        }
        for task in pending { task.cancel() }
        for collection in loaded where collection.isDirty {
            let paths = paths(of: collection.name)
            do {
                _ = try collection.save(
                    indexPath: paths.index, recordPath: paths.record, dimension: collection.index.dimension, metric: collection.index.metric.rawValue)
            } catch {
                host.log(.warning, "intelligence: could not write the snapshot of collection \(collection.name) at close: \(error)", portal: portal)
            }
        }
    }
}
