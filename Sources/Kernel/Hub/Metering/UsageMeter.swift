import Foundation
import NIOConcurrencyHelpers

/// This kernel's meter: one ``PortalUsage`` per portal, drained by the ``UsageFlusher``;
/// its totals since start are served on `/metrics`.
public final class UsageMeter: Sendable {
    /// `[metering]` and the quotas and prices.
    let settings: HubSettings
    private let portals = NIOLockedValueBox<[String: PortalUsage]>([:])
    /// Counts of this kernel since it started (drained ones), and the last gauges, for `/metrics`.
    private let lifetime = NIOLockedValueBox<(sums: [UsageBatch.Key: Double], gauges: [UsageBatch.Key: Double], peaks: [UsageBatch.Key: Double])>(([:], [:], [:]))
    /// Drained counts a failed flush gave back, written with the next one.
    private let carried = NIOLockedValueBox<UsageBatch>(UsageBatch())

    /// A meter with `settings`.
    init(settings: HubSettings) {
        self.settings = settings
    }

    /// Whether requests are counted (`[metering] enabled`).
    var isEnabled: Bool { settings.meteringEnabled }

    /// The usage of `portal` (the same object for the kernel's life), or nil with metering off.
    func usage(for portal: String) -> PortalUsage? {
        guard isEnabled else { return nil }
        return portals.withLockedValue { all in
            if let existing = all[portal] { return existing }
            let made = PortalUsage(portal: portal)
            all[portal] = made
            return made
        }
    }

    /// Every portal's usage object made so far.
    var allUsage: [PortalUsage] { portals.withLockedValue { Array($0.values) } }

    /// Takes every count since the last drain (and whatever a failed flush gave back).
    func drain() -> UsageBatch {
        var batch = carried.withLockedValue { carried in
            defer { carried = UsageBatch() }
            return carried
        }
        var fresh = UsageBatch()
        for usage in allUsage { fresh.merge(usage.drain()) }
        lifetime.withLockedValue { lifetime in
            for (key, value) in fresh.sums { lifetime.sums[key, default: 0] += value }
            for (key, value) in fresh.maxima where UsageMetric.isPeak(key.metric) { lifetime.peaks[key] = value }
        }
        batch.merge(fresh)
        return batch
    }

    /// Gives back a batch that could not be written: the next flush writes it.
    func restore(_ batch: UsageBatch) {
        carried.withLockedValue { $0.merge(batch) }
    }

    /// Remembers sampled gauges for `/metrics`.
    func noteGauges(_ gauges: [UsageBatch.Key: Double]) {
        lifetime.withLockedValue { lifetime in
            for (key, value) in gauges { lifetime.gauges[key] = value }
        }
    }

    /// The Prometheus text of this kernel's usage since it started (as of its last flush):
    /// `meltybase_usage_requests_total{portal,plugin,class}`, `meltybase_usage_bytes_in_total`,
    /// `meltybase_usage_bytes_out_total{portal,plugin}`, `meltybase_usage_counter_total{portal,plugin,metric}`
    /// `meltybase_usage_db_size_bytes{portal}` and `meltybase_usage_peak{portal,plugin,metric}`
    /// (the largest value of a `_peak` counter in the latest flush interval that had one).
    func prometheusText() -> String {
        let (sums, gauges, peaks) = lifetime.withLockedValue { ($0.sums, $0.gauges, $0.peaks) }
        var families: [String: [String]] = [:]
        for (key, value) in sums.sorted(by: { $0.key < $1.key }) {
            let portal = "portal=\"\(Self.escape(key.portal))\""
            switch key.metric {
            case UsageMetric.requests:
                let parts = key.dimension.split(separator: ":", maxSplits: 1).map(String.init)
                let labels = "\(portal),plugin=\"\(Self.escape(parts.first ?? ""))\",class=\"\(Self.escape(parts.count > 1 ? parts[1] : ""))\""
                families["meltybase_usage_requests_total", default: []].append("meltybase_usage_requests_total{\(labels)} \(UsageNumber.text(value))")
            case UsageMetric.bytesIn, UsageMetric.bytesOut:
                let name = "meltybase_usage_\(key.metric)_total"
                families[name, default: []].append("\(name){\(portal),plugin=\"\(Self.escape(key.dimension))\"} \(UsageNumber.text(value))")
            default:
                let labels = "\(portal),plugin=\"\(Self.escape(key.dimension))\",metric=\"\(Self.escape(key.metric))\""
                families["meltybase_usage_counter_total", default: []].append("meltybase_usage_counter_total{\(labels)} \(UsageNumber.text(value))")
            }
        }
        for (key, value) in gauges.sorted(by: { $0.key < $1.key }) {
            families["meltybase_usage_db_size_bytes", default: []].append(
                "meltybase_usage_db_size_bytes{portal=\"\(Self.escape(key.portal))\"} \(UsageNumber.text(value))")
        }
        for (key, value) in peaks.sorted(by: { $0.key < $1.key }) {
            let labels = "portal=\"\(Self.escape(key.portal))\",plugin=\"\(Self.escape(key.dimension))\",metric=\"\(Self.escape(key.metric))\""
            families["meltybase_usage_peak", default: []].append("meltybase_usage_peak{\(labels)} \(UsageNumber.text(value))")
        }
        var text = ""
        for (name, lines) in families.sorted(by: { $0.key < $1.key }) {
            text += "# TYPE \(name) \(name.hasSuffix("_total") ? "counter" : "gauge")\n"
            for line in lines { text += line + "\n" }
        }
        return text
    }

    private static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
