import Foundation

/// One quota of one portal against the month's total.
struct QuotaState: Sendable, Equatable, Encodable {
    /// Where a total stands against its limits.
    enum Level: String, Sendable, Encodable, Comparable {
        case ok, soft, hard

        private var rank: Int { self == .ok ? 0 : self == .soft ? 1 : 2 }
        /// ok < soft < hard.
        static func < (left: Level, right: Level) -> Bool { left.rank < right.rank }
    }

    /// The portal.
    var portal: String
    /// The metric (`requests`).
    var metric: String
    /// The configured name (`requests_per_month`).
    var quota: String
    /// The soft limit, if any.
    var soft: Double?
    /// The hard limit, if any.
    var hard: Double?
    /// The month's total.
    var total: Double
    /// `ok`, `soft` (at or above soft) or `hard` (at or above hard: requests refused).
    var level: Level

    /// The states of `portal`'s quotas given its month totals, by metric name.
    static func evaluate(portal: String, limits: [String: QuotaLimit], totals: [String: Double]) -> [QuotaState] {
        limits.keys.sorted().compactMap { metric in
            guard let limit = limits[metric] else { return nil }
            let total = totals[metric] ?? 0
            var level = Level.ok
            if let hard = limit.hard, total >= hard {
                level = .hard
            } else if let soft = limit.soft, total >= soft {
                level = .soft
            }
            return QuotaState(portal: portal, metric: metric, quota: metric + "_per_month", soft: limit.soft, hard: limit.hard, total: total, level: level)
        }
    }

    /// JSON names.
    enum CodingKeys: String, CodingKey {
        case portal, metric, quota, soft, hard, total, level
    }
}
