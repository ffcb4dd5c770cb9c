import AsyncHTTPClient
import Foundation
import Logging
import NIOCore

/// The rows of `meltybase plugins list`: from the running kernel when one answers on the
/// first listener, otherwise by loading the configured plugins in this process.
public struct PluginInventory: Sendable {
    /// One plugin row.
    public struct Row: Sendable {
        /// Plugin name.
        public var name: String
        /// Version, or "-" when it failed to load.
        public var version: String
        /// ABI `major.minor`, or "-".
        public var abi: String
        /// `loaded` or `failed`.
        public var status: String
        /// Library path.
        public var path: String
        /// Route prefix, or "-".
        public var prefix: String
        /// `portal: enabled|disabled` pairs.
        public var portals: [(String, String)]
        /// Why it failed, when it did.
        public var reason: String?
        /// Its health (ABI 1.5), when it loaded.
        public var health: PluginHealth? = nil
    }

    /// Where the rows came from (`running kernel at URL` or `loaded by this command`).
    public var source: String
    /// The rows.
    public var rows: [Row]

    /// Asks the kernel at `baseURL`; nil when nothing answers.
    public static func fromRunningKernel(baseURL: String) async -> PluginInventory? {
        var request = HTTPClientRequest(url: baseURL + "/v1/system/plugins")
        request.method = .GET
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(5)), response.status == .ok,
            let body = try? await response.body.collect(upTo: 4 * 1024 * 1024),
            let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
            let plugins = object["plugins"] as? [[String: Any]]
        else { return nil }
        let rows = plugins.map { plugin in
            Row(
                name: plugin["name"] as? String ?? "?", version: plugin["version"] as? String ?? "-", abi: plugin["abi"] as? String ?? "-",
                status: plugin["status"] as? String ?? "?", path: plugin["path"] as? String ?? "", prefix: plugin["prefix"] as? String ?? "-",
                portals: (plugin["portals"] as? [String: String] ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                reason: plugin["reason"] as? String,
                health: (plugin["health"] as? [String: Any]).map { PluginHealth(status: $0["status"] as? String ?? "?", message: $0["message"] as? String ?? "") })
        }
        return PluginInventory(source: "running kernel at \(baseURL)", rows: rows)
    }

    /// Loads the configured plugins here (their `init` runs, then `shutdown`).
    /// `enabled` maps portal to enabled plugin names, when the system database was reachable.
    public static func loadedHere(config: KernelConfig, enabled: [String: [String]], logger: Logger) async throws -> PluginInventory {
        let context = HostContext(logger: logger)
        let host = try await PluginHost(
            configs: config.plugins.map {
                var copy = $0
                copy.required = false
                return copy
            }, context: context)
        let health = await host.health()
        await host.shutdown()
        await context.close()
        let portals = enabled.keys.sorted()
        var rows = host.plugins.map { plugin in
            Row(
                name: plugin.name, version: plugin.version, abi: plugin.abiVersion, status: "loaded", path: plugin.path, prefix: plugin.routePrefixes.joined(separator: ","),
                portals: portals.map { ($0, enabled[$0]?.contains(plugin.name) == true ? "enabled" : "disabled") }, reason: nil,
                health: health[plugin.name])
        }
        rows += host.failures.map { Row(name: $0.plugin, version: "-", abi: "-", status: "failed", path: $0.path, prefix: "-", portals: [], reason: $0.reason) }
        return PluginInventory(source: "loaded by this command (no kernel answered)", rows: rows)
    }
}
