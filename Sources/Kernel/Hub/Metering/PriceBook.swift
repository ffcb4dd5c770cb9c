import Foundation

/// One tier's prices: a base price per month and, per metric, a unit price, the unit's
/// size and an included amount.
public struct PriceBook: Sendable, Equatable {
    /// ISO 4217 code shown with every amount (default "EUR").
    public var currency = "EUR"
    /// The monthly price before any usage.
    public var basePrice: Decimal = 0
    /// Prices by metric (`requests`, `bytes_out`, `active_auth_users`, ...).
    public var metrics: [String: MetricPrice] = [:]

    /// An empty price book.
    public init() {}
}
