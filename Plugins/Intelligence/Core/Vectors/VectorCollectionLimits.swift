/// The bounds every Knowledge Mesh request is checked against before it reaches Postgres or
/// the index (names, ids, sizes, dimensions, `k`).
public enum VectorCollectionLimits {
    /// Longest collection name (`[a-z0-9_-]{1,63}`).
    public static let nameLength = 63
    /// Longest entry id in UTF-8 bytes.
    public static let idBytes = 256
    /// Largest metadata object of one entry, serialized, in bytes.
    public static let metadataBytes = 16 * 1024
    /// Longest `content` of one entry in UTF-8 bytes.
    public static let contentBytes = 64 * 1024
    /// Most entries in one upsert, delete or publish.
    public static let batchSize = 1_000
    /// The dimensions a collection may have.
    public static let dimensions = 1...4_096
    /// The `k` a query may ask for.
    public static let topK = 1...100
    /// The `ef` a query may ask for.
    public static let ef = 1...1_000
    /// Most entries one collection may hold.
    public static let entriesPerCollection = 1_000_000
    /// Most collections one portal may have.
    public static let collectionsPerPortal = 1_000

    /// The memory an HNSW index of `entries` vectors of `dimension` takes, estimated from
    /// hnswlib's layout (the vector, 2·M = 32 level-0 links of 4 bytes, the label, the link
    /// count and the upper levels, about 200 bytes an entry at M = 16). Saturates; never traps.
    public static func estimatedIndexBytes(entries: Int, dimension: Int) -> Int {
        let vectorBytes = max(0, dimension).multipliedReportingOverflow(by: 4)
        guard !vectorBytes.overflow else { return Int.max }
        let entryBytes = vectorBytes.partialValue.addingReportingOverflow(200)
        guard !entryBytes.overflow else { return Int.max }
        let total = max(0, entries).multipliedReportingOverflow(by: entryBytes.partialValue)
        return total.overflow ? Int.max : total.partialValue
    }

    /// Whether `name` is a valid collection name: 1...63 of `a-z`, `0-9`, `_`, `-`.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...nameLength).contains(bytes.count) else { return false }
        return bytes.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }

    /// Why `id` is not a valid entry id, or nil when it is (1...256 bytes, no NUL, no control characters).
    public static func problem(withID id: String) -> String? {
        let bytes = id.utf8.count
        if bytes == 0 { return "an entry id is empty" }
        if bytes > idBytes { return "an entry id has \(bytes) bytes; at most \(idBytes) are allowed" }
        if id.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "an entry id contains a NUL or another control character"
        }
        return nil
    }

    /// Why `vector` does not fit a collection of `dimension`, or nil when it does (finite numbers, the right length).
    public static func problem(withVector vector: [Double], dimension: Int) -> String? {
        if vector.count != dimension { return "a vector has \(vector.count) numbers; the collection's dimension is \(dimension)" }
        if let bad = vector.first(where: { !$0.isFinite || abs($0) > Double(Float.greatestFiniteMagnitude) }) {
            return "a vector holds \(bad), which is not a finite 32-bit float"
        }
        return nil
    }
}
