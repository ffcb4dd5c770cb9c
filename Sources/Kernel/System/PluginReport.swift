import Foundation

/// What `meltybase plugins list` shows: loaded plugins, refusals, and per-portal status.
struct PluginReport {
    let plugins: PluginHost
    let portals: PortalRegistry
    let rateLimiter: RateLimiter
    /// Each plugin's health by name (ABI 1.5); a plugin missing here shows "not reported".
    var health: [String: PluginHealth] = [:]

    var json: [UInt8] {
        let loaded: [[String: Any]] = plugins.plugins.map { plugin in
            [
                "name": plugin.name, "version": plugin.version, "abi": plugin.abiVersion, "path": plugin.path,
                "prefix": plugin.routePrefix, "prefixes": plugin.routePrefixes, "build_signature": plugin.buildSignature, "status": "loaded",
                "websockets": plugin.acceptsWebSockets,
                "health": ["status": (health[plugin.name] ?? .notReported).status, "message": (health[plugin.name] ?? .notReported).message],
                "pages": plugin.studioPages.map { $0.id }, "commands": plugin.commands.map { $0.name },
                "portals": Dictionary(
                    portals.names.map { ($0, portals.enabledPlugins(of: $0).contains(plugin.name) ? "enabled" : "disabled") },
                    uniquingKeysWith: { first, _ in first }),
            ]
        }
        let failed: [[String: Any]] = plugins.failures.map { ["name": $0.plugin, "path": $0.path, "status": "failed", "reason": $0.reason] }
        let object: [String: Any] = ["plugins": loaded + failed, "portals": portals.names, "rate_limit_fallback": rateLimiter.isUsingFallback]
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8))
    }
}
