/// A monthly limit on one metric: crossing `soft` warns (audit entry, Studio banner),
/// reaching `hard` refuses the portal's requests with 429 until the month ends.
public struct QuotaLimit: Sendable, Equatable {
    /// Warn at this monthly total (nil: no warning).
    public var soft: Double?
    /// Refuse at this monthly total (nil: never refuse).
    public var hard: Double?

    /// A limit with the given thresholds.
    public init(soft: Double? = nil, hard: Double? = nil) {
        self.soft = soft
        self.hard = hard
    }
}
