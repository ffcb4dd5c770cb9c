import Foundation

/// What one flush writes: summed counts and gauges by (portal, metric, dimension), and the
/// active members of the month by (portal, set, member hash).
struct UsageBatch: Sendable, Equatable {
    /// One row key of `hub.usage_hourly` below the hour.
    struct Key: Hashable, Sendable, Comparable {
        /// The portal.
        var portal: String
        /// The metric (``UsageMetric``).
        var metric: String
        /// The breakdown ('' for none).
        var dimension: String

        /// By portal, metric, dimension (the flush's lock order).
        static func < (left: Key, right: Key) -> Bool {
            (left.portal, left.metric, left.dimension) < (right.portal, right.metric, right.dimension)
        }
    }

    /// A member of a named set, active this month (`usage_mark`).
    struct Mark: Hashable, Sendable, Comparable {
        /// The portal.
        var portal: String
        /// The set (`auth_users`).
        var set: String
        /// Lower-case hex SHA-256 of the member.
        var memberHash: String

        /// By portal, set, member hash (the flush's lock order).
        static func < (left: Mark, right: Mark) -> Bool {
            (left.portal, left.set, left.memberHash) < (right.portal, right.set, right.memberHash)
        }
    }

    /// Counts to add.
    var sums: [Key: Double] = [:]
    /// Gauges (the hour keeps the largest).
    var maxima: [Key: Double] = [:]
    /// Members to record once per month.
    var marks: Set<Mark> = []

    /// Whether there is nothing to write.
    var isEmpty: Bool { sums.isEmpty && maxima.isEmpty && marks.isEmpty }

    /// Adds `other`'s counts, gauges and marks to these.
    mutating func merge(_ other: UsageBatch) {
        for (key, value) in other.sums { sums[key, default: 0] += value }
        for (key, value) in other.maxima { maxima[key] = max(maxima[key] ?? value, value) }
        marks.formUnion(other.marks)
    }
}
