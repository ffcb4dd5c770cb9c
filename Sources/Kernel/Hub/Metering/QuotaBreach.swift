import Foundation

/// A hard quota a portal reached this month: what the 429 names.
struct QuotaBreach: Sendable, Equatable {
    /// The metric (`requests`).
    var metric: String
    /// The hard limit.
    var limit: Double
    /// The month's total when it was checked.
    var total: Double
    /// The start of the next month (UTC), when the quota resets.
    var resetsAt: Date

    /// The quota's name as configured (`requests_per_month`).
    var quotaName: String { metric + "_per_month" }

    /// The 429 `quota_exceeded` with `Retry-After` until the month ends.
    func error(portal: String, now: Date) -> GatewayError {
        let seconds = max(1, Int(resetsAt.timeIntervalSince(now).rounded(.up)))
        return GatewayError(
            status: 429, code: "quota_exceeded",
            message:
                "portal \"\(portal)\" reached its hard quota \(quotaName) (\(UsageNumber.text(total)) of \(UsageNumber.text(limit)) this month)",
            hint:
                "the quota resets at \(UsageClock.iso(resetsAt)); raise [quotas.portals.\(portal)] \(quotaName) in plugins.toml (or the tier's) and restart the kernel",
            headers: [("Retry-After", String(seconds))])
    }
}
