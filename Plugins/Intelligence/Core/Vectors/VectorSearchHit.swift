/// One search result: a stored label and its distance to the query (smaller is nearer).
public struct VectorSearchHit: Sendable, Equatable {
    /// The label the vector was stored under.
    public let label: UInt64
    /// The metric's distance to the query.
    public let distance: Float

    /// A hit for `label` at `distance`.
    public init(label: UInt64, distance: Float) {
        self.label = label
        self.distance = distance
    }
}
