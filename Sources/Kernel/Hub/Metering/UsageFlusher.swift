import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Writes the meter's counts to the system database every `flush_interval_seconds` (and
/// just before each hour ends, so counts land in their hour), samples the portal databases' sizes
/// once an hour, then checks the quotas against the month's totals. A graceful shutdown
/// flushes once more; a kernel that dies loses at most one interval of counts.
final class UsageFlusher: Service, Sendable {
    /// The meter drained at each flush.
    let meter: UsageMeter
    /// Where the counts go.
    let store: UsageStore
    /// Receives the quota crossings.
    let audit: any AuditSink
    /// For failures (a flush that could not be written).
    let logger: Logger
    /// The portals of this kernel (for database sizes and quota flags).
    let portalNames: @Sendable () -> [String]
    private let state = NIOLockedValueBox<State>(State())

    private struct State {
        /// The hour of the database sizes sampled so far, and the portals sampled in it.
        var sizeHour: Date?
        var sized: Set<String> = []
        var quotas: [String: [QuotaState]] = [:]
        var tier = "indie"
        var lastFlush: Date?
    }

    /// A flusher writing `meter` through `store`, auditing quota crossings to `audit`.
    init(meter: UsageMeter, store: UsageStore, audit: any AuditSink, logger: Logger, portalNames: @escaping @Sendable () -> [String]) {
        self.meter = meter
        self.store = store
        self.audit = audit
        self.logger = logger
        self.portalNames = portalNames
    }

    /// The quota states found by the last flush, by portal.
    var quotaStates: [String: [QuotaState]] { state.withLockedValue { $0.quotas } }
    /// The license tier the last flush read.
    var tier: String { state.withLockedValue { $0.tier } }

    /// Flushes until the kernel shuts down, then once more.
    func run() async throws {
        guard meter.isEnabled else {
            // A service that returns ends the kernel's group: wait for the shutdown instead.
            try? await gracefulShutdown()
            return
        }
        await flush()
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: .seconds(Self.delay(now: Date(), interval: Double(self.meter.settings.flushIntervalSeconds))))
                await self.flush()
            }
        }
        // Graceful shutdown (or cancellation): the last counts go out before the database closes.
        await flush()
    }

    /// Seconds until the next flush: the interval, or less to flush just before the hour
    /// ends (50 ms before), so the hour's counts land in it rather than in the next one.
    static func delay(now: Date, interval: Double) -> Double {
        var toHourEnd = UsageClock.hour(now).addingTimeInterval(3600).timeIntervalSince(now) - 0.05
        // Just flushed for this hour's end: the next hour's end is the mark.
        if toHourEnd < 0.05 { toHourEnd += 3600 }
        return max(0.05, min(interval, toHourEnd))
    }

    /// One flush: counts, hourly database sizes, quotas. Failures are logged; the counts
    /// stay in memory for the next try.
    func flush(now: Date = Date()) async {
        var batch = meter.drain()
        let hour = UsageClock.hour(now)
        let portals = portalNames()
        // Each portal's database once an hour (a portal without a database yet is asked again next flush).
        let due = state.withLockedValue { state -> [String] in
            if state.sizeHour != hour {
                state.sizeHour = hour
                state.sized = []
            }
            return portals.filter { !state.sized.contains($0) }
        }
        if !due.isEmpty {
            do {
                let sizes = try await store.databaseSizes(portals: due)
                var gauges: [UsageBatch.Key: Double] = [:]
                for (portal, size) in sizes { gauges[UsageBatch.Key(portal: portal, metric: UsageMetric.databaseSize, dimension: "")] = size }
                for (key, value) in gauges { batch.maxima[key] = max(batch.maxima[key] ?? value, value) }
                meter.noteGauges(gauges)
                state.withLockedValue { $0.sized.formUnion(sizes.keys) }
            } catch {
                logger.warning("could not sample the portal databases' sizes", metadata: ["error": "\(error)"])
            }
        }
        do {
            try await store.flush(batch, hour: hour)
            state.withLockedValue { $0.lastFlush = now }
        } catch {
            meter.restore(batch)
            logger.warning("could not write usage to the system database; kept for the next flush", metadata: ["error": "\(error)"])
            return
        }
        await checkQuotas(now: now, portals: portals)
    }

    /// Compares the month's totals with the quotas: flags portals at a hard limit (their
    /// requests get 429) and audits each soft or hard crossing once per portal, metric and month.
    func checkQuotas(now: Date, portals: [String]) async {
        let settings = meter.settings
        guard !settings.tierQuotas.isEmpty || !settings.portalQuotas.isEmpty else { return }
        do {
            let tier = try await store.licenseTier()
            let totals = try await store.monthlyTotals(month: now)
            var states: [String: [QuotaState]] = [:]
            for portal in portals {
                let limits = settings.quotas(portal: portal, tier: tier)
                guard !limits.isEmpty else { continue }
                let evaluated = QuotaState.evaluate(portal: portal, limits: limits, totals: totals[portal] ?? [:])
                states[portal] = evaluated
                let breach = evaluated.first { $0.level == .hard }.map {
                    QuotaBreach(metric: $0.metric, limit: $0.hard ?? 0, total: $0.total, resetsAt: UsageClock.nextMonth(now))
                }
                meter.usage(for: portal)?.hardBreach = breach
                for quota in evaluated where quota.level != .ok {
                    try await announce(quota, now: now)
                }
            }
            for portal in Set(portals).subtracting(states.keys) { meter.usage(for: portal)?.hardBreach = nil }
            state.withLockedValue {
                $0.quotas = states
                $0.tier = tier
            }
        } catch {
            logger.warning("could not check the quotas", metadata: ["error": "\(error)"])
        }
    }

    /// Audits a soft crossing (and a hard one) the first time any kernel sees it this month.
    private func announce(_ quota: QuotaState, now: Date) async throws {
        var levels: [(String, Double)] = []
        if let soft = quota.soft, quota.total >= soft { levels.append(("soft", soft)) }
        if quota.level == .hard, let hard = quota.hard { levels.append(("hard", hard)) }
        for (level, limit) in levels {
            guard try await store.recordQuotaEvent(portal: quota.portal, month: now, metric: quota.metric, level: level, total: quota.total, limit: limit) else {
                continue
            }
            let details: [String: Any] = [
                "quota": quota.quota, "metric": quota.metric, "level": level, "limit": limit, "total": quota.total,
                "month": String(UsageClock.iso(UsageClock.month(now)).prefix(7)),
            ]
            let json = String(decoding: (try? JSONSerialization.data(withJSONObject: details, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
            logger.notice("portal crossed a \(level) quota", metadata: ["portal": "\(quota.portal)", "quota": "\(quota.quota)"])
            audit.append(
                actor: "kernel", action: "hub.quota.\(level)_exceeded", target: quota.quota, portal: quota.portal, detailsJSON: json
            ) { [logger] failure in
                if let failure { logger.error("could not audit a quota crossing", metadata: ["error": "\(failure)"]) }
            }
        }
    }
}
