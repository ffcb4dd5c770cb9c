import Foundation

/// `[metering]`, `[quotas.*]` and `[prices.*]` of `plugins.toml`: how the kernel meters
/// each portal's usage, where it stops a portal, and what the usage costs (docs/hub.md).
public struct HubSettings: Sendable, Equatable {
    /// `[metering] enabled`: count requests, bytes and plugin counters per portal (default true).
    public var meteringEnabled = true
    /// `[metering] flush_interval_seconds`: how often the counts go to the system database
    /// (default 60); a kernel that dies loses at most this many seconds of counts.
    public var flushIntervalSeconds = 60
    /// `[quotas.indie]`, `[quotas.commercial]`: limits per license tier.
    public var tierQuotas: [String: [String: QuotaLimit]] = [:]
    /// `[quotas.portals.<name>]`: limits of one portal, replacing its tier's for the same metric.
    public var portalQuotas: [String: [String: QuotaLimit]] = [:]
    /// `[prices.<tier>]`: the price book per license tier.
    public var prices: [String: PriceBook] = [:]

    /// Every default: metering on, flushed each minute, no quotas, no prices.
    public init() {}

    /// The limits that apply to `portal` under `tier`, by metric.
    public func quotas(portal: String, tier: String) -> [String: QuotaLimit] {
        var limits = tierQuotas[tier] ?? [:]
        for (metric, limit) in portalQuotas[portal] ?? [:] { limits[metric] = limit }
        return limits
    }
}
