import CHNSW

/// How a vector index measures nearness. Smaller distances are nearer for every metric.
public enum VectorMetric: String, Sendable, CaseIterable {
    /// Squared Euclidean distance.
    case l2
    /// `1 - dot(a, b)` on the vectors as given.
    case innerProduct = "inner_product"
    /// `1 - cos(a, b)`: vectors are normalised on insert and query, so a zero vector is refused.
    case cosine

    /// The shim's code for this metric.
    var code: Int32 {
        switch self {
        case .l2: Int32(CHNSW_METRIC_L2)
        case .innerProduct: Int32(CHNSW_METRIC_INNER_PRODUCT)
        case .cosine: Int32(CHNSW_METRIC_COSINE)
        }
    }

    /// The metric for a shim code (nil for an unknown one).
    init?(code: Int32) {
        guard let metric = Self.allCases.first(where: { $0.code == code }) else { return nil }
        self = metric
    }
}
