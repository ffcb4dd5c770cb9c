import Foundation

/// The price of one metric: `unit_price` per started `unit_size` beyond `included`.
public struct MetricPrice: Sendable, Equatable {
    /// The price of one unit.
    public var unitPrice: Decimal
    /// How many of the metric make one unit (1000 requests, 1e9 bytes).
    public var unitSize: Double
    /// The monthly amount that costs nothing.
    public var included: Double

    /// A metric's price.
    public init(unitPrice: Decimal, unitSize: Double = 1, included: Double = 0) {
        self.unitPrice = unitPrice
        self.unitSize = unitSize
        self.included = included
    }
}
