import Foundation
import Hummingbird
import HummingbirdCore

/// The checked parameters of `GET /v1/hub/usage`: `portal` (optional), `from` and `to`
/// (ISO 8601; default: the current month so far), `granularity` (`hour`, `day`, `month`;
/// default `hour`), `format` (`json`, `csv`; or `Accept: text/csv`).
struct UsageQuery: Sendable, Equatable {
    /// The portal (nil: all).
    var portal: String?
    /// The range's start, rounded down to its period.
    var from: Date
    /// The range's end (exclusive).
    var to: Date
    /// Hour, day or month rows.
    var granularity: UsageStore.Granularity
    /// Answer as CSV.
    var csv: Bool

    /// The parameters the route knows.
    static let parameters: Set<String> = ["portal", "from", "to", "granularity", "format"]

    /// Parses and range-checks `query`; throws a 400 naming the first bad parameter.
    init(_ query: FlatDictionary<Substring, Substring>, accept: String?, now: Date = Date()) throws {
        for (key, _) in query where !Self.parameters.contains(String(key)) {
            throw Self.invalid(String(key), "unknown query parameter \"\(key)\"; use \(Self.parameters.sorted().joined(separator: ", "))")
        }
        if let text = query["portal"].map(String.init), !text.isEmpty {
            guard UsageQuery.isPortalName(text) else { throw Self.invalid("portal", "portal must be a portal name (a-z, 0-9, '-', '_', at most 63)") }
            portal = text
        }
        let granularityText = query["granularity"].map(String.init) ?? "hour"
        guard let granularity = UsageStore.Granularity(rawValue: granularityText) else {
            throw Self.invalid("granularity", "granularity must be hour, day or month")
        }
        self.granularity = granularity
        switch query["format"].map(String.init) ?? "" {
        case "": csv = accept?.lowercased().contains("text/csv") ?? false
        case "json": csv = false
        case "csv": csv = true
        default: throw Self.invalid("format", "format must be json or csv")
        }
        var from = UsageClock.month(now)
        var to = UsageClock.hour(now).addingTimeInterval(3600)
        if let text = query["from"].map(String.init), !text.isEmpty {
            guard let date = TimeParameter.parse(text) else {
                throw Self.invalid("from", "from must be an ISO 8601 date or time in 2000...9999, e.g. 2026-12-01 or 2026-12-01T00:00:00Z")
            }
            from = date
        }
        if let text = query["to"].map(String.init), !text.isEmpty {
            guard let date = TimeParameter.parse(text) else {
                throw Self.invalid("to", "to must be an ISO 8601 date or time in 2000...9999, e.g. 2026-12-31 or 2026-12-31T23:00:00Z")
            }
            to = date
        }
        guard from <= to else { throw Self.invalid("from", "from must not be after to") }
        // Rows are periods starting in [from, to): a day or month holding `from` counts.
        switch granularity {
        case .hour: from = UsageClock.hour(from)
        case .day: from = UsageClock.calendar.startOfDay(for: from)
        case .month: from = UsageClock.month(from)
        }
        self.from = from
        self.to = to
    }

    /// Whether `text` can be a portal name.
    static func isPortalName(_ text: String) -> Bool {
        text.utf8.count <= 63 && text.utf8.first.map { $0 != UInt8(ascii: "-") && $0 != UInt8(ascii: "_") } == true
            && text.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95 }
    }

    /// A 400 `invalid_parameter` naming `parameter`.
    static func invalid(_ parameter: String, _ message: String) -> GatewayError {
        var error = GatewayError(status: 400, code: "invalid_parameter", message: message, hint: "see docs/hub.md, GET /v1/hub/usage")
        error.extraFields = ["parameter": parameter]
        return error
    }
}
