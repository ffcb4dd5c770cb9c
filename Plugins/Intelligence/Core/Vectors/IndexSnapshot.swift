import CHNSW

/// What a snapshot file written by `VectorIndex.save(to:tag:)` holds, read from its header
/// without loading the index (the body's checksum and links are checked by `VectorIndex.load`).
public struct IndexSnapshot: Sendable, Equatable {
    /// The snapshot format's version.
    public let formatVersion: Int
    /// The index's metric.
    public let metric: VectorMetric
    /// The index's dimension.
    public let dimension: Int
    /// The index's M.
    public let m: Int
    /// The index's efConstruction.
    public let efConstruction: Int
    /// Element slots allocated when it was saved.
    public let capacity: Int
    /// Live vectors when it was saved.
    public let count: Int
    /// Removed vectors still holding a slot.
    public let removed: Int
    /// The caller's tag passed to `save(to:tag:)`.
    public let tag: UInt64

    /// The header of the snapshot at `path`; throws for a missing, foreign or damaged header.
    public static func read(at path: String) throws -> IndexSnapshot {
        try VectorIndex.check(path: path)
        var header = chnsw_snapshot_header()
        try withUnsafeTemporaryAllocation(of: CChar.self, capacity: 512) { buffer in
            guard let error = buffer.baseAddress else { throw VectorIndexError("no error buffer", kind: .internal) }
            error.initialize(to: 0)
            let status = chnsw_snapshot_info(path, &header, error, 512)
            if status != Int32(CHNSW_OK) { throw VectorIndexError(status: status, message: error) }
        }
        guard let metric = VectorMetric(code: header.metric) else {
            throw VectorIndexError("snapshot \(path) has an unknown metric", kind: .corrupt)
        }
        // The shim bounded every field (dimension ≤ 4096, slots ≤ 2^24), so these fit an Int.
        return IndexSnapshot(
            formatVersion: Int(header.format_version), metric: metric, dimension: Int(header.dimension),
            m: Int(header.m), efConstruction: Int(header.ef_construction), capacity: Int(header.capacity),
            count: Int(header.slots - header.removed), removed: Int(header.removed), tag: header.tag)
    }
}
