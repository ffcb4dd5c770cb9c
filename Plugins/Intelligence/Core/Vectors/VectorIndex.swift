import CHNSW

/// An in-memory HNSW index of fixed-dimension float vectors under 64-bit labels (hnswlib
/// through the CHNSW shim).
///
/// Thread safety: every method may be called from any thread. Searches run in parallel;
/// upserts, removals and growth take a writer lock (preferred over new searches), saves a
/// reader lock. Calls block (CPU work, lock waits, file I/O for save and load): run them on a
/// thread pool, never on the cooperative pool or an event loop.
public final class VectorIndex: Sendable {
    /// Build and query parameters.
    public struct Parameters: Sendable {
        /// hnswlib's M: links per node per layer (2...128; 16 suits most data).
        public var m: Int = 16
        /// The build-time beam (1...10000): higher builds slower, with better recall.
        public var efConstruction: Int = 200
        /// The default query beam (1...10000), raised to k when smaller.
        public var efSearch: Int = 64
        /// Seeds the level generator: the same seed and insertion order give the same graph.
        public var seed: UInt64 = 100

        /// The defaults: M 16, efConstruction 200, efSearch 64.
        public init() {}
    }

    /// Dimensions an index may have.
    public static let dimensionRange = 1...Int(CHNSW_MAX_DIMENSION)
    /// Values of k a search may ask for.
    public static let kRange = 1...Int(CHNSW_MAX_K)
    /// Values of ef (query beam) and efConstruction.
    public static let efRange = 1...Int(CHNSW_MAX_EF)
    /// Values of M.
    public static let mRange = Int(CHNSW_MIN_M)...Int(CHNSW_MAX_M)
    /// Capacities (element slots) an index may have; it grows up to the upper bound.
    public static let capacityRange = 1...(1 << 24)

    /// Which hnswlib this build uses.
    public static var libraryVersion: String { String(cString: chnsw_version()) }
    /// Which distance kernel this CPU runs ("avx512", "avx2" or "generic").
    public static var distanceKernel: String { String(cString: chnsw_kernel()) }

    /// The shim's index; freed in deinit. Safe to share: the shim locks every call.
    nonisolated(unsafe) private let handle: OpaquePointer

    /// Components per vector.
    public let dimension: Int
    /// How distances are measured.
    public let metric: VectorMetric

    /// An empty index with room for `capacity` vectors before its first growth.
    public init(dimension: Int, metric: VectorMetric, capacity: Int, parameters: Parameters = .init()) throws {
        try Self.check(dimension: dimension)
        try Self.check(parameters)
        guard Self.capacityRange.contains(capacity) else {
            throw VectorIndexError("capacity must be \(Self.capacityRange.lowerBound)...\(Self.capacityRange.upperBound), got \(capacity)")
        }
        var created: OpaquePointer?
        try Self.call { error, size in
            chnsw_create(
                dimension, metric.code, parameters.m, parameters.efConstruction, parameters.efSearch, capacity,
                parameters.seed, &created, error, size)
        }
        guard let created else { throw VectorIndexError("the index could not be created", kind: .internal) }
        self.handle = created
        self.dimension = dimension
        self.metric = metric
    }

    private init(handle: OpaquePointer, dimension: Int, metric: VectorMetric) {
        self.handle = handle
        self.dimension = dimension
        self.metric = metric
    }

    deinit { chnsw_free(handle) }

    /// Live vectors (upserted and not removed).
    public var count: Int { chnsw_count(handle) }

    /// Element slots allocated (grows by doubling as vectors are added).
    public var capacity: Int { chnsw_capacity(handle) }

    /// The default query beam.
    public var efSearch: Int { chnsw_ef(handle) }

    /// The M the index was built with.
    public var m: Int { chnsw_m(handle) }

    /// The efConstruction the index was built with.
    public var efConstruction: Int { chnsw_ef_construction(handle) }

    /// Whether a live vector is stored under `label`.
    public func contains(label: UInt64) -> Bool { chnsw_contains(handle, label) != 0 }

    /// Stores `vector` under `label`, replacing any vector stored under it (a removed label
    /// comes back). Grows the capacity as needed (doubling, under the writer lock).
    public func upsert(label: UInt64, vector: [Float]) throws {
        try Self.call { error, size in
            chnsw_add(handle, label, vector, vector.count, 1, error, size)
        }
    }

    /// Stores every vector of `batch` in order (a label repeated ends with its last vector).
    /// All vectors are checked before any is stored; searches interleave with the batch.
    public func upsert(batch: [(label: UInt64, vector: [Float])]) throws {
        guard !batch.isEmpty else { return }
        var labels: [UInt64] = []
        var flat: [Float] = []
        labels.reserveCapacity(batch.count)
        flat.reserveCapacity(batch.count * dimension)
        for (position, item) in batch.enumerated() {
            guard item.vector.count == dimension else {
                throw VectorIndexError(
                    "vector \(position) of the batch has \(item.vector.count) components, the index has dimension \(dimension)")
            }
            labels.append(item.label)
            flat.append(contentsOf: item.vector)
        }
        try Self.call { error, size in
            chnsw_add_batch(handle, labels, flat, labels.count, dimension, 1, error, size)
        }
    }

    /// Hides the vector stored under `label` from searches; a no-op for an unknown label.
    public func remove(label: UInt64) throws {
        var removed: Int32 = 0
        try Self.call { error, size in
            chnsw_remove(handle, label, &removed, error, size)
        }
    }

    /// Sets the capacity (at least the slots in use; removed vectors keep theirs).
    public func reserve(capacity: Int) throws {
        guard Self.capacityRange.contains(capacity) else {
            throw VectorIndexError("capacity must be \(Self.capacityRange.lowerBound)...\(Self.capacityRange.upperBound), got \(capacity)")
        }
        try Self.call { error, size in chnsw_resize(handle, capacity, error, size) }
    }

    /// The `k` stored vectors nearest to `query`, nearest first. `ef` overrides the default
    /// beam for this query. With `allowed`, only labels it accepts are returned, and k of them
    /// whenever k are stored (an exact scan finishes searches the graph cannot fill). `allowed`
    /// is called synchronously on this thread, for any number of labels, under the index's
    /// reader lock: it must not call this index.
    public func search(
        _ query: [Float], k: Int, ef: Int? = nil, allowed: ((UInt64) -> Bool)? = nil
    ) throws
        -> [VectorSearchHit]
    {
        try checkSearch(k: k, ef: ef)
        return try collect(k: k, allowed: allowed) { labels, distances, filter, context, error, size in
            chnsw_search(handle, query, query.count, k, ef ?? 0, filter, context, labels, distances, error, size)
        }
    }

    /// The exact `k` nearest (a full scan): the ground truth recall is measured against.
    public func exactSearch(_ query: [Float], k: Int, allowed: ((UInt64) -> Bool)? = nil) throws -> [VectorSearchHit] {
        try checkSearch(k: k, ef: nil)
        return try collect(k: k, allowed: allowed) { labels, distances, filter, context, error, size in
            chnsw_search_exact(handle, query, query.count, k, filter, context, labels, distances, error, size)
        }
    }

    /// Writes a snapshot to `path` atomically (temporary file, fsync, rename, directory fsync),
    /// with `tag` stored in its header (e.g. the last change the snapshot includes; read it
    /// back with `IndexSnapshot.read(at:)`). Searches continue meanwhile; writers wait.
    public func save(to path: String, tag: UInt64 = 0) throws {
        try Self.check(path: path)
        try Self.call { error, size in chnsw_save(handle, path, tag, error, size) }
    }

    /// Loads the snapshot at `path`, which must hold an index of `dimension` and `metric`.
    /// A truncated, corrupted or foreign file throws (kind `.corrupt`), never crashes.
    /// `parameters.efSearch` and `seed` apply to the loaded index; M and efConstruction come
    /// from the file.
    public static func load(
        from path: String, dimension: Int, metric: VectorMetric, parameters: Parameters = .init()
    )
        throws -> VectorIndex
    {
        try check(dimension: dimension)
        try check(path: path)
        guard efRange.contains(parameters.efSearch) else {
            throw VectorIndexError("efSearch must be \(efRange.lowerBound)...\(efRange.upperBound), got \(parameters.efSearch)")
        }
        var loaded: OpaquePointer?
        try call { error, size in
            chnsw_load(path, dimension, metric.code, parameters.efSearch, parameters.seed, &loaded, nil, error, size)
        }
        guard let loaded else { throw VectorIndexError("the snapshot could not be loaded", kind: .internal) }
        return VectorIndex(handle: loaded, dimension: dimension, metric: metric)
    }

    // MARK: - Checks and calls

    private static let errorCapacity = 512

    /// Runs a shim call with an error buffer; throws its message unless it returned CHNSW_OK.
    private static func call(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
        try withUnsafeTemporaryAllocation(of: CChar.self, capacity: errorCapacity) { buffer in
            guard let base = buffer.baseAddress else { throw VectorIndexError("no error buffer", kind: .internal) }
            base.initialize(to: 0)
            let status = body(base, errorCapacity)
            if status != Int32(CHNSW_OK) {
                throw VectorIndexError(status: status, message: base)
            }
        }
    }

    private typealias SearchCall = (
        UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<Float>, chnsw_filter?, UnsafeMutableRawPointer?,
        UnsafeMutablePointer<CChar>, Int
    ) -> Int64

    /// Runs a search call into buffers for `k` hits, passing `allowed` through as a C filter.
    private func collect(k: Int, allowed: ((UInt64) -> Bool)?, _ body: SearchCall) throws -> [VectorSearchHit] {
        // Stack buffers (k ≤ 1000: at most 12 KiB) keep a search to one heap allocation, its result.
        try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: k) { labels in
            try withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { distances in
                try withUnsafeTemporaryAllocation(of: CChar.self, capacity: Self.errorCapacity) { buffer in
                    guard let labelBase = labels.baseAddress, let distanceBase = distances.baseAddress,
                        let error = buffer.baseAddress
                    else { throw VectorIndexError("no search buffers", kind: .internal) }
                    error.initialize(to: 0)
                    let found: Int64
                    if let allowed {
                        let filter = AllowedLabels(allowed)
                        found = withExtendedLifetime(filter) {
                            body(
                                labelBase, distanceBase, AllowedLabels.callback,
                                Unmanaged.passUnretained(filter).toOpaque(), error, Self.errorCapacity)
                        }
                    } else {
                        found = body(labelBase, distanceBase, nil, nil, error, Self.errorCapacity)
                    }
                    if found < 0 { throw VectorIndexError(status: Int32(CHNSW_INVALID_ARGUMENT), message: error) }
                    // The shim wrote `found` (≤ k) entries of each buffer.
                    let count = Int(min(found, Int64(k)))
                    return (0..<count).map { VectorSearchHit(label: labelBase[$0], distance: distanceBase[$0]) }
                }
            }
        }
    }

    private func checkSearch(k: Int, ef: Int?) throws {
        guard Self.kRange.contains(k) else {
            throw VectorIndexError("k must be \(Self.kRange.lowerBound)...\(Self.kRange.upperBound), got \(k)")
        }
        if let ef, !Self.efRange.contains(ef) {
            throw VectorIndexError("ef must be \(Self.efRange.lowerBound)...\(Self.efRange.upperBound), got \(ef)")
        }
    }

    private static func check(dimension: Int) throws {
        guard dimensionRange.contains(dimension) else {
            throw VectorIndexError("dimension must be \(dimensionRange.lowerBound)...\(dimensionRange.upperBound), got \(dimension)")
        }
    }

    private static func check(_ parameters: Parameters) throws {
        guard mRange.contains(parameters.m) else {
            throw VectorIndexError("M must be \(mRange.lowerBound)...\(mRange.upperBound), got \(parameters.m)")
        }
        guard efRange.contains(parameters.efConstruction) else {
            throw VectorIndexError(
                "efConstruction must be \(efRange.lowerBound)...\(efRange.upperBound), got \(parameters.efConstruction)")
        }
        guard efRange.contains(parameters.efSearch) else {
            throw VectorIndexError("efSearch must be \(efRange.lowerBound)...\(efRange.upperBound), got \(parameters.efSearch)")
        }
    }

    /// A path the shim can take: non-empty, no NUL byte (it would cut the C string short).
    static func check(path: String) throws {
        guard !path.isEmpty else { throw VectorIndexError("snapshot path is empty") }
        guard !path.utf8.contains(0) else { throw VectorIndexError("snapshot path contains a NUL byte") }
        guard path.utf8.count <= 4000 else { throw VectorIndexError("snapshot path is too long") }
    }
}

/// A Swift label filter passed through the shim's C callback.
private final class AllowedLabels {
    /// The caller's filter.
    let test: (UInt64) -> Bool

    /// A box for `test`, passed unretained to the shim for the duration of one search.
    init(_ test: @escaping (UInt64) -> Bool) { self.test = test }

    /// The C side of the filter: `context` is an unretained `AllowedLabels`.
    static let callback: chnsw_filter = { label, context in
        guard let context else { return 0 }
        return Unmanaged<AllowedLabels>.fromOpaque(context).takeUnretainedValue().test(label) ? 1 : 0
    }
}
