import Synchronization

/// One plugin's request counts for one portal since the last flush: lock-free atomics the
/// gateway adds to on every request, and the flusher swaps to zero.
final class PluginTraffic: Sendable {
    /// The plugin the counts belong to.
    let plugin: String
    /// Requests answered with 1xx or 2xx (counted as 2xx), 3xx, 4xx, 5xx.
    private let class2 = Atomic<Int64>(0)
    private let class3 = Atomic<Int64>(0)
    private let class4 = Atomic<Int64>(0)
    private let class5 = Atomic<Int64>(0)
    private let bytesIn = Atomic<Int64>(0)
    private let bytesOut = Atomic<Int64>(0)

    /// Counts for `plugin`, all zero.
    init(plugin: String) {
        self.plugin = plugin
    }

    /// Counts one answered request: its status and body sizes.
    func record(status: Int, bytesIn inbound: Int, bytesOut outbound: Int) {
        switch UsageMetric.statusClass(status) {
        case 3: class3.add(1, ordering: .relaxed)
        case 4: class4.add(1, ordering: .relaxed)
        case 5: class5.add(1, ordering: .relaxed)
        default: class2.add(1, ordering: .relaxed)
        }
        if inbound > 0 { bytesIn.add(Int64(inbound), ordering: .relaxed) }
        if outbound > 0 { bytesOut.add(Int64(outbound), ordering: .relaxed) }
    }

    /// Adds response bytes written after the status was counted (a streamed body).
    func addBytesOut(_ count: Int) {
        if count > 0 { bytesOut.add(Int64(count), ordering: .relaxed) }
    }

    /// Adds request bytes read after the status was counted (a streamed body).
    func addBytesIn(_ count: Int) {
        if count > 0 { bytesIn.add(Int64(count), ordering: .relaxed) }
    }

    /// Takes the counts and leaves zeros: `(metric, dimension, value)` for every non-zero count.
    func drain() -> [(metric: String, dimension: String, value: Double)] {
        var taken: [(String, String, Double)] = []
        let byClass = [
            ("2xx", class2.exchange(0, ordering: .relaxed)), ("3xx", class3.exchange(0, ordering: .relaxed)),
            ("4xx", class4.exchange(0, ordering: .relaxed)), ("5xx", class5.exchange(0, ordering: .relaxed)),
        ]
        for (name, count) in byClass where count != 0 { taken.append((UsageMetric.requests, "\(plugin):\(name)", Double(count))) }
        let inbound = bytesIn.exchange(0, ordering: .relaxed)
        if inbound != 0 { taken.append((UsageMetric.bytesIn, plugin, Double(inbound))) }
        let outbound = bytesOut.exchange(0, ordering: .relaxed)
        if outbound != 0 { taken.append((UsageMetric.bytesOut, plugin, Double(outbound))) }
        return taken
    }
}
