import Foundation
import NIOConcurrencyHelpers

/// Decides which repeated sign-in refusals reach the audit log: the first refusal of a lock
/// (or of a Redis outage) is written, the repeats until it ends are only counted.
///
/// Without it every refused attempt appended a permanent, hash-chained row through the
/// system database, so flooding the login filled the disk and delayed every admin and audited
/// plugin call. The evidence stays: each failed password check is audited (the throttle bounds
/// those to a few per account and address per window), each lock is audited when it is
/// first met, and the refusals hidden behind it are counted in
/// `meltybase_login_refusals_unaudited_total` and in the next entry's `refused_since_last_entry`.
final class RefusalAuditGate: Sendable {
    private struct Period {
        var endsAt: UInt64
        var suppressed: Int
    }

    private let periods = NIOLockedValueBox<[String: Period]>([:])
    /// Keys remembered at most; past it, periods that ended are dropped (then all, oldest first).
    let capacity: Int

    init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    /// Whether a refusal for `key` lasting `seconds` should be audited now; when it should,
    /// also how many refusals of the previous period for `key` went unaudited.
    func shouldAudit(_ key: String, seconds: Int) -> (audit: Bool, suppressedBefore: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        let length = UInt64(max(1, min(seconds, 86_400))) * 1_000_000_000
        return periods.withLockedValue { periods in
            if var period = periods[key], period.endsAt > now {
                period.suppressed += 1
                periods[key] = period
                return (false, 0)
            }
            let suppressed = periods[key]?.suppressed ?? 0
            if periods.count >= capacity {
                periods = periods.filter { $0.value.endsAt > now }
                if periods.count >= capacity {
                    for key in periods.sorted(by: { $0.value.endsAt < $1.value.endsAt }).prefix(periods.count - capacity + 1).map(\.key) {
                        periods[key] = nil
                    }
                }
            }
            periods[key] = Period(endsAt: now + length, suppressed: 0)
            return (true, suppressed)
        }
    }
}
