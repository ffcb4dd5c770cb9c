import Foundation

/// A portal's bill for one month from its monthly totals and its tier's ``PriceBook``:
/// per priced metric, `billable = max(0, quantity - included)`, `units` = billable divided
/// by the unit size, rounded up (a started unit counts), `amount = units × unit_price`
/// rounded to cents; the total is the base price plus the amounts.
struct BillingSummary: Sendable, Equatable, Encodable {
    /// One priced metric.
    struct Line: Sendable, Equatable, Encodable {
        /// The priced metric.
        var metric: String
        /// The month's total.
        var quantity: Double
        /// The amount that costs nothing.
        var included: Double
        /// `max(0, quantity - included)`.
        var billable: Double
        /// How many of the metric make one unit.
        var unitSize: Double
        /// Started units of the billable amount.
        var units: Double
        /// The price of one unit.
        var unitPrice: Decimal
        /// `units × unit_price`, rounded to cents.
        var amount: Decimal

        /// JSON names (snake case).
        enum CodingKeys: String, CodingKey {
            case metric, quantity, included, billable, units, amount
            case unitSize = "unit_size"
            case unitPrice = "unit_price"
        }
    }

    /// The portal billed.
    var portal: String
    /// `YYYY-MM`.
    var period: String
    /// The license tier whose price book applies.
    var tier: String
    /// The currency of every amount.
    var currency: String
    /// The monthly base price.
    var basePrice: Decimal
    /// One line per priced metric, by name.
    var lines: [Line]
    /// The sum of the lines' amounts.
    var usageTotal: Decimal
    /// The base price plus the usage total.
    var total: Decimal

    /// JSON names (snake case).
    enum CodingKeys: String, CodingKey {
        case portal, period, tier, currency, lines, total
        case basePrice = "base_price"
        case usageTotal = "usage_total"
    }

    /// The summary of `totals` (the month's quantities by metric) priced with `book`.
    static func compute(portal: String, period: String, tier: String, book: PriceBook, totals: [String: Double]) -> BillingSummary {
        var lines: [Line] = []
        var usage = Decimal(0)
        for metric in book.metrics.keys.sorted() {
            guard let price = book.metrics[metric] else { continue }
            let quantity = totals[metric] ?? 0
            let billable = max(0, quantity - price.included)
            let units = (billable / price.unitSize).rounded(.up)
            let amount = (Decimal(string: UsageNumber.text(units)) ?? Decimal(units)) * price.unitPrice
            let line = Line(
                metric: metric, quantity: quantity, included: price.included, billable: billable, unitSize: price.unitSize, units: units,
                unitPrice: price.unitPrice, amount: rounded(amount))
            usage += line.amount
            lines.append(line)
        }
        return BillingSummary(
            portal: portal, period: period, tier: tier, currency: book.currency, basePrice: book.basePrice, lines: lines, usageTotal: usage,
            total: book.basePrice + usage)
    }

    /// `value` rounded half up to cents.
    static func rounded(_ value: Decimal) -> Decimal {
        var input = value
        var output = Decimal()
        NSDecimalRound(&output, &input, 2, .plain)
        return output
    }
}
