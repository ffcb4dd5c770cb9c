import Crypto
import Foundation
import MeltyEd25519
import NIOConcurrencyHelpers
import Synchronization

/// One portal's usage since the last flush, and whether a hard quota stops it.
///
/// The gateway reaches it through the ``PortalHandle`` a request resolves: request counts
/// go to a ``PluginTraffic`` each plugin instance holds (atomics, no lock); plugins'
/// `counter_add` and `usage_mark` calls take a small lock here.
final class PortalUsage: Sendable {
    /// The portal.
    let portal: String
    private let traffic = NIOLockedValueBox<[String: PluginTraffic]>([:])
    private let counters = NIOLockedValueBox<[UsageBatch.Key: Double]>([:])
    /// `_peak` counters: the largest value reported since the last flush.
    private let peaks = NIOLockedValueBox<[UsageBatch.Key: Double]>([:])
    private let marks = NIOLockedValueBox<Set<UsageBatch.Mark>>([])
    private let refused = Atomic<Bool>(false)
    private let breach = NIOLockedValueBox<QuotaBreach?>(nil)

    /// Usage of `portal`, all zero.
    init(portal: String) {
        self.portal = portal
    }

    /// The counters of `plugin`'s requests (made once per plugin and kept).
    func traffic(for plugin: String) -> PluginTraffic {
        traffic.withLockedValue { all in
            if let existing = all[plugin] { return existing }
            let made = PluginTraffic(plugin: plugin)
            all[plugin] = made
            return made
        }
    }

    /// Adds a plugin's `counter_add` to the metric its name feeds.
    func add(counter name: String, plugin: String, delta: Int64) {
        let key = UsageBatch.Key(portal: portal, metric: UsageMetric.pluginCounter(name), dimension: plugin)
        if UsageMetric.isPeak(key.metric) {
            peaks.withLockedValue { $0[key] = max($0[key] ?? Double(delta), Double(delta)) }
            return
        }
        counters.withLockedValue { $0[key, default: 0] += Double(delta) }
    }

    /// Records that `member` was active in `set` (stored as its SHA-256 only).
    func mark(set: String, member: [UInt8]) {
        let mark = UsageBatch.Mark(portal: portal, set: set, memberHash: ByteEncoding.hex(Array(SHA256.hash(data: member))))
        _ = marks.withLockedValue { $0.insert(mark) }
    }

    /// Takes everything counted since the last call.
    func drain() -> UsageBatch {
        var batch = UsageBatch()
        for plugin in traffic.withLockedValue({ Array($0.values) }) {
            for (metric, dimension, value) in plugin.drain() {
                batch.sums[UsageBatch.Key(portal: portal, metric: metric, dimension: dimension), default: 0] += value
            }
        }
        let counted: [UsageBatch.Key: Double] = counters.withLockedValue { counters in
            let taken = counters
            counters = [:]
            return taken
        }
        for (key, value) in counted where value != 0 {
            batch.sums[key, default: 0] += value
        }
        let peaked: [UsageBatch.Key: Double] = peaks.withLockedValue { peaks in
            let taken = peaks
            peaks = [:]
            return taken
        }
        for (key, value) in peaked { batch.maxima[key] = max(batch.maxima[key] ?? value, value) }
        let marked: Set<UsageBatch.Mark> = marks.withLockedValue { marks in
            let taken = marks
            marks = []
            return taken
        }
        batch.marks = marked
        return batch
    }

    /// The 429 a request of this portal gets while a hard quota is reached, or nil (one
    /// relaxed atomic load when it is not).
    func refusal(now: Date = Date()) -> GatewayError? {
        guard refused.load(ordering: .relaxed), let breach = breach.withLockedValue({ $0 }) else { return nil }
        return breach.error(portal: portal, now: now)
    }

    /// The hard quota reached this month, or nil to serve again.
    var hardBreach: QuotaBreach? {
        get { breach.withLockedValue { $0 } }
        set {
            breach.withLockedValue { $0 = newValue }
            refused.store(newValue != nil, ordering: .relaxed)
        }
    }
}
