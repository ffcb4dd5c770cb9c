import Foundation
import MeltyPluginSDK
import VaultCore

/// The Vault plugin: portal secrets under AES-256-GCM envelope encryption, served at
/// `/p/<portal>/vault/v1/secrets` and to other plugins as the JSON service `vault.v1`.
/// The crypto, storage and rotation live in `VaultCore`; this layer is HTTP, access
/// rules and audit. See `docs/vault.md`.
public final class VaultPlugin: PortalPlugin {
    public static let description = PluginDescription(name: "vault", version: "1.0.0", routePrefix: "vault")

    /// What `start` set up; `nil` before `start` and after `shutdown`.
    struct Runtime: @unchecked Sendable {
        let host: PluginHostServices
        let vault: SecretVault
        let databases: DatabasePools
    }

    nonisolated(unsafe) static var runtime: Runtime?

    let portal: Portal
    /// The system database this portal's kernel runs on.
    let database: DatabaseWorkers

    /// Validates the master key and the configuration and exports `vault.v1`. Any failure refuses the plugin with a
    /// message naming the setting at fault (the kernel keeps serving).
    public static func start(host: PluginHostServices, config: [String: Any]) throws {
        let settings: VaultConfiguration
        do {
            settings = try VaultConfiguration(config: config, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw PluginError.invalid("vault: \(error)")
        }
        runtime = Runtime(
            host: host, vault: SecretVault(keys: settings.keys, maxValueBytes: settings.maxValueBytes),
            databases: DatabasePools(connectionsPerPool: settings.databaseConnections))
        let previous = settings.keys.previous.map(\.id)
        host.log(.info, "vault: master key id \(settings.keys.current.id)" + (previous.isEmpty ? "" : ", previous key id(s) \(previous.joined(separator: ", ")) accepted for unwrapping"))
        try PluginExport.exportJSONService("vault", major: 1) { instance, method, argument in
            guard let plugin = instance as? VaultPlugin else { throw PluginError.invalid("vault.v1: wrong instance") }
            return try await VaultService.call(plugin: plugin, method: method, argument: argument)
        }
    }

    /// Binds the portal to its kernel's system database (the `vault` schema is created
    /// there on first use).
    public init(portal: Portal, config: [String: Any]) throws {
        guard let runtime = Self.runtime else { throw PluginError.unavailable("vault: the plugin is not started") }
        let conninfo = runtime.host.postgresConninfo(portal: portal)
        guard !conninfo.isEmpty else {
            throw PluginError.unavailable("vault: the host gives no Postgres conninfo for portal \(portal.name) (needs ABI 1.1 or later)")
        }
        self.portal = portal
        database = runtime.databases.workers(for: conninfo)
    }

    public func handle(_ request: PluginRequest) async -> PluginResponse {
        guard let runtime = Self.runtime else {
            return .error(status: 503, code: "vault_unavailable", message: "the vault plugin is not started")
        }
        return await SecretRoutes(runtime: runtime, portal: portal, database: database).handle(request)
    }

    public static func shutdown() {
        runtime?.databases.close()
        runtime = nil
    }
}

/// The plugin's one exported symbol.
@_cdecl("meltybase_plugin_entry")
public func meltybasePluginEntry() -> UnsafeRawPointer {
    PluginExport.descriptor(for: VaultPlugin.self)
}
