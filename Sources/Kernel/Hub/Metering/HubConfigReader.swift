import Foundation
import TOMLKit

/// Reads `[metering]`, `[quotas]` and `[prices]` into ``HubSettings``; every mismatch is a
/// located ``ConfigError`` (through the configuration's ``TableReader``).
struct HubConfigReader {
    /// The configuration file's typed reader.
    let reader: TableReader

    private func error(_ key: String, _ message: String) -> ConfigError { reader.error(key, message) }

    /// The license tiers quotas and prices are given for.
    static let tiers = ["indie", "commercial"]

    /// Reads the three sections of `root` into `settings`.
    func read(_ root: TOMLTable, into settings: inout HubSettings) throws {
        if let metering = try table(root, "metering", prefix: "") {
            try checkKeys(metering, prefix: "metering", allowed: ["enabled", "flush_interval_seconds"])
            if let flag = try reader.bool(metering, "enabled", prefix: "metering") { settings.meteringEnabled = flag }
            if let seconds = try reader.int(metering, "flush_interval_seconds", prefix: "metering", range: 1...3600) { settings.flushIntervalSeconds = seconds }
        }
        if let quotas = try table(root, "quotas", prefix: "") {
            try checkKeys(quotas, prefix: "quotas", allowed: Set(Self.tiers + ["portals"]))
            for tier in Self.tiers {
                if let limits = try table(quotas, tier, prefix: "quotas") { settings.tierQuotas[tier] = try quotaLimits(limits, prefix: "quotas.\(tier)") }
            }
            if let portals = try table(quotas, "portals", prefix: "quotas") {
                for name in portals.keys {
                    guard let limits = try table(portals, name, prefix: "quotas.portals") else { continue }
                    settings.portalQuotas[name] = try quotaLimits(limits, prefix: "quotas.portals.\(name)")
                }
            }
        }
        if let prices = try table(root, "prices", prefix: "") {
            try checkKeys(prices, prefix: "prices", allowed: Set(Self.tiers))
            for tier in Self.tiers {
                if let book = try table(prices, tier, prefix: "prices") { settings.prices[tier] = try priceBook(book, prefix: "prices.\(tier)") }
            }
        }
    }

    /// `<metric>_per_month = { soft = N, hard = N }` entries.
    private func quotaLimits(_ table: TOMLTable, prefix: String) throws -> [String: QuotaLimit] {
        var limits: [String: QuotaLimit] = [:]
        for key in table.keys {
            let path = "\(prefix).\(key)"
            guard key.hasSuffix("_per_month"), key.count > "_per_month".count, UsageMetric.isValidName(String(key.dropLast("_per_month".count))) else {
                throw error(path, "expected <metric>_per_month, e.g. requests_per_month = { soft = 800000, hard = 1000000 }")
            }
            guard let inner = try self.table(table, key, prefix: prefix) else { continue }
            try checkKeys(inner, prefix: path, allowed: ["soft", "hard"])
            let soft = try number(inner, "soft", prefix: path)
            let hard = try number(inner, "hard", prefix: path)
            if soft == nil && hard == nil { throw error(path, "give soft, hard or both") }
            if let soft, let hard, soft > hard { throw error(path, "soft (\(soft)) must not be above hard (\(hard))") }
            limits[String(key.dropLast("_per_month".count))] = QuotaLimit(soft: soft, hard: hard)
        }
        return limits
    }

    /// `currency`, `base_price` and `<metric> = { unit_price, unit_size, included }` entries.
    private func priceBook(_ table: TOMLTable, prefix: String) throws -> PriceBook {
        var book = PriceBook()
        for key in table.keys {
            let path = "\(prefix).\(key)"
            switch key {
            case "currency":
                guard let code = table[key]?.string, code.count == 3, code.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
                    throw error(path, "expected a three-letter currency code such as \"EUR\"")
                }
                book.currency = code
            case "base_price":
                book.basePrice = try decimal(table, key, prefix: prefix) ?? 0
            default:
                guard UsageMetric.isValidName(key) else { throw error(path, "expected currency, base_price or a metric name (a-z, 0-9, _)") }
                guard let inner = try self.table(table, key, prefix: prefix) else { continue }
                try checkKeys(inner, prefix: path, allowed: ["unit_price", "unit_size", "included"])
                guard let unitPrice = try decimal(inner, "unit_price", prefix: path) else { throw error(path, "missing unit_price (the price of one unit)") }
                let unitSize = try number(inner, "unit_size", prefix: path) ?? 1
                guard unitSize > 0 else { throw error("\(path).unit_size", "expected a number above 0") }
                book.metrics[key] = MetricPrice(unitPrice: unitPrice, unitSize: unitSize, included: try number(inner, "included", prefix: path) ?? 0)
            }
        }
        return book
    }

    private func table(_ table: TOMLTable, _ key: String, prefix: String) throws -> TOMLTable? {
        try reader.table(table, key, prefix: prefix)
    }

    private func checkKeys(_ table: TOMLTable, prefix: String, allowed: Set<String>) throws {
        try reader.checkKeys(table, prefix: prefix, allowed: allowed)
    }

    /// A quantity: 0 to 1e18 (NaN and infinities are outside).
    private func number(_ table: TOMLTable, _ key: String, prefix: String) throws -> Double? {
        try reader.number(table, key, prefix: prefix, range: 0...1e18)
    }

    /// A price: exact decimal digits (0.0001 stays 0.0001).
    private func decimal(_ table: TOMLTable, _ key: String, prefix: String) throws -> Decimal? {
        guard let number = try number(table, key, prefix: prefix) else { return nil }
        return Decimal(string: String(number)) ?? Decimal(number)
    }
}
