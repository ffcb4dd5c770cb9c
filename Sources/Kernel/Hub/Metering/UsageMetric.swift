import Foundation

/// The names of the metered quantities (docs/hub.md lists their meaning).
enum UsageMetric {
    /// Requests a plugin answered; dimension `<plugin>:<2xx|3xx|4xx|5xx>`.
    static let requests = "requests"
    /// Request body bytes received; dimension: the plugin.
    static let bytesIn = "bytes_in"
    /// Response body bytes sent; dimension: the plugin.
    static let bytesOut = "bytes_out"
    /// The portal database's size in bytes, sampled each hour (a gauge: rollups take the maximum).
    static let databaseSize = "db_size_bytes"
    /// Prefix of the distinct-member counts of a month (`active_auth_users`).
    static let activePrefix = "active_"

    /// Metrics whose rollups take the maximum instead of the sum (with every `_peak` metric).
    static let gauges: Set<String> = [databaseSize]

    /// Whether `metric` is a peak a plugin reports (`connections_peak`): a gauge whose
    /// hourly value is the largest reported, merged across kernels with `greatest`.
    static func isPeak(_ metric: String) -> Bool { metric.hasSuffix("_peak") }

    /// The SQL condition on `metric` of the metrics whose rollups take the maximum.
    static let maximumCondition = "(metric = 'db_size_bytes' OR right(metric, 5) = '_peak')"

    /// Names the kernel uses itself; a plugin counter with one of them gets a `plugin_` prefix.
    static let reserved: Set<String> = [requests, bytesIn, bytesOut, databaseSize]

    /// The status class a status belongs to, as a dimension suffix.
    static func statusClass(_ status: Int) -> Int { min(max(status / 100, 1), 5) }

    /// Whether `name` can be a metric: 1 to 64 of a-z, 0-9 and `_`.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
    }

    /// The metric a plugin's `counter_add` name feeds: lower-cased, other characters `_`,
    /// at most 64 characters, reserved names prefixed with `plugin_`.
    static func pluginCounter(_ raw: String) -> String {
        let cleaned = String(
            String(raw.lowercased().unicodeScalars.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "_" }).prefix(64))
        if cleaned.isEmpty { return "plugin_unnamed" }
        return reserved.contains(cleaned) || cleaned.hasPrefix(activePrefix) ? "plugin_" + cleaned : cleaned
    }

    /// The portal's database name as the Database plugin makes it (`mb_<portal>`, hashed
    /// when too long): the same rule as its `PortalDatabaseNames.database`.
    static func portalDatabase(_ portal: String) -> String {
        let full = "mb_" + portal
        if full.utf8.count <= 63 { return full }
        var hash: UInt64 = 1469598103934665603
        for byte in portal.utf8 { hash = (hash ^ UInt64(byte)) &* 1099511628211 }
        return "mb_" + String(portal.prefix(40)) + "_" + String(hash, radix: 16)
    }
}
