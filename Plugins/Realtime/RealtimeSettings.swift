import MeltyJSON
import MeltyPluginSDK

/// `[plugins.realtime.config]`: limits per portal and allowed browser origins.
///
/// ```toml
/// [plugins.realtime.config]
/// max_connections = 100000          # open sockets per portal on one kernel
/// max_joins_per_second = 1000       # channel joins per portal (burst: 2x)
/// max_messages_per_second = 50000   # client messages per portal (burst: 2x)
/// max_channels_per_connection = 100
/// allowed_origins = ["https://app.example.com"]   # browsers' Origin; empty: any
/// [plugins.realtime.config.portal_origins]
/// acme = ["https://acme.example.com"]             # per portal, replaces allowed_origins
/// ```
struct RealtimeSettings: Sendable {
    var maxConnections = 100_000
    var maxJoinsPerSecond = 1_000
    var maxMessagesPerSecond = 50_000
    var maxChannelsPerConnection = 100
    var allowedOrigins: [String] = []
    var portalOrigins: [String: [String]] = [:]

    static let plugin = "realtime"

    init() {}

    init(config: PluginConfig) throws {
        try config.refuseUnknownKeys(
            ["max_connections", "max_joins_per_second", "max_messages_per_second", "max_channels_per_connection", "allowed_origins", "portal_origins"],
            plugin: Self.plugin)
        maxConnections = try config.integer("max_connections", in: 1...10_000_000, plugin: Self.plugin) ?? maxConnections
        maxJoinsPerSecond = try config.integer("max_joins_per_second", in: 1...1_000_000, plugin: Self.plugin) ?? maxJoinsPerSecond
        maxMessagesPerSecond = try config.integer("max_messages_per_second", in: 1...100_000_000, plugin: Self.plugin) ?? maxMessagesPerSecond
        maxChannelsPerConnection = try config.integer("max_channels_per_connection", in: 1...10_000, plugin: Self.plugin) ?? maxChannelsPerConnection
        allowedOrigins = try config.strings("allowed_origins", plugin: Self.plugin) ?? []
        if let table = config["portal_origins"] {
            guard let object = table.objectValue else {
                throw PluginError.invalid("realtime: config key 'portal_origins' must be a table of portal = [origins]")
            }
            for (portal, list) in object {
                guard let origins = list.arrayValue?.compactMap(\.stringValue), origins.count == list.arrayValue?.count else {
                    throw PluginError.invalid("realtime: portal_origins.\(portal) must be a list of origin strings")
                }
                portalOrigins[portal] = origins
            }
        }
        for origin in allowedOrigins + portalOrigins.values.flatMap({ $0 }) where !(origin.hasPrefix("http://") || origin.hasPrefix("https://")) {
            throw PluginError.invalid("realtime: origin \"\(origin)\" must start with http:// or https:// (as browsers send Origin)")
        }
    }

    /// Whether a browser's `Origin` may open a socket on `portal` (no Origin: not a browser, allowed).
    func allows(origin: String?, portal: String) -> Bool {
        guard let origin, !origin.isEmpty else { return true }
        let allowed = portalOrigins[portal] ?? allowedOrigins
        if allowed.isEmpty { return true }
        let normalized = origin.hasSuffix("/") ? String(origin.dropLast()) : origin
        return allowed.contains { $0.lowercased() == normalized.lowercased() || $0 == "*" }
    }
}
