import Dispatch
import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import Synchronization
import VaultCore

/// The Vault plugin: portal secrets under AES-256-GCM envelope encryption, served at
/// `/p/<portal>/vault/v1/secrets` and to other plugins as the JSON service `vault.v1`.
/// The crypto, storage and rotation live in `VaultCore`; this layer is HTTP, access
/// rules and audit. See `docs/vault.md`.
public final class VaultPlugin: PortalPlugin {
    /// Name, version and route prefixes.
    public static let description = PluginDescription(name: "vault", version: "1.0.0", routePrefix: "vault")

    /// The Vault's Studio page (ABI 1.5), shipped as the target's `Studio` resource folder.
    public static var studio: StudioDefinition? {
        StudioDefinition(directory: "MeltyBase_VaultPlugin.resources/Studio", pages: [StudioPageDefinition(id: "secrets", title: "Vault", module: "vault.js")])
    }

    /// `meltybase vault rotate-master | rotate-portal-key | bench`.
    public static var commands: [PluginCommandDefinition] { VaultCommands.all }

    /// What `start` set up; `nil` before `start` and after `shutdown`.
    struct Runtime: Sendable {
        let host: PluginHostServices
        let vault: SecretVault
        let databases: VaultDatabases
        /// Drives every pool's sockets; created by `start`, stopped by `shutdown`.
        let loop: PostgresEventLoop
        let audit: AuditCalls
    }

    private static let current = Mutex<Runtime?>(nil)
    static var runtime: Runtime? { current.withLock { $0 } }

    let portal: Portal
    /// The system database this portal's kernel runs on.
    let database: VaultDatabase

    /// Validates the master key and the configuration and exports `vault.v1`. Any failure refuses the plugin with a
    /// message naming the setting at fault (the kernel keeps serving).
    public static func start(host: PluginHostServices, config: PluginConfig) throws {
        let settings: VaultConfiguration
        do {
            settings = try VaultConfiguration(configJSON: config.json, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw PluginError.invalid("vault: \(error)")
        }
        let loop = PostgresEventLoop(name: "meltybase-vault-postgres")
        let started = Runtime(
            host: host, vault: SecretVault(keys: settings.keys, maxValueBytes: settings.maxValueBytes),
            databases: VaultDatabases(connectionsPerPool: settings.databaseConnections, masterKeyIDs: settings.keys.ids, loop: loop), loop: loop,
            audit: AuditCalls(host: host))
        let previousRuntime = current.withLock { runtime in
            defer { runtime = started }
            return runtime
        }
        previousRuntime.map(stop)
        let previous = settings.keys.previous.map(\.id)
        host.log(
            .info, "vault: master key id \(settings.keys.current.id)" + (previous.isEmpty ? "" : ", previous key id(s) \(previous.joined(separator: ", ")) accepted for unwrapping")
        )
        try PluginExport.exportJSONService("vault", major: 1) { instance, method, argument in
            guard let plugin = instance as? VaultPlugin else { throw PluginError.invalid("vault.v1: wrong instance") }
            return try await VaultService.call(plugin: plugin, method: method, argument: argument)
        }
    }

    /// Binds the portal to its kernel's system database (the `vault` schema is created
    /// there on first use).
    public init(portal: Portal, config: PluginConfig) throws {
        guard let runtime = Self.runtime else { throw PluginError.unavailable("vault: the plugin is not started") }
        let conninfo = try runtime.host.postgresConninfo(portal: portal)
        guard !conninfo.isEmpty else {
            throw PluginError.unavailable("vault: the host gives no Postgres conninfo for portal \(portal.name) (needs ABI 1.1 or later)")
        }
        self.portal = portal
        database = runtime.databases.database(for: conninfo)
    }

    /// Answers one request on the plugin\'s prefixes.
    public func handle(_ request: PluginRequest) async -> PluginResponse {
        guard let runtime = Self.runtime else {
            return .error(status: 503, code: "vault_unavailable", message: "the vault plugin is not started")
        }
        return await SecretRoutes(runtime: runtime, portal: portal, database: database).handle(request)
    }

    /// Closes the pools, stops the event loop and wipes the cached data keys.
    public static func shutdown() {
        current.withLock { runtime in
            defer { runtime = nil }
            return runtime
        }.map(stop)
    }

    private static func stop(_ runtime: Runtime) {
        runtime.databases.close()
        runtime.loop.shutdown()
        runtime.vault.forgetDataKeys()
    }
}

/// The host's `audit` call, which blocks its caller until the entry is committed, made
/// from a dispatch queue rather than the cooperative pool: a burst of reads waits there
/// (and is group-committed by the kernel) while the pool's threads keep serving requests.
struct AuditCalls: Sendable {
    let host: PluginHostServices

    /// Appends one entry (the host's asynchronous audit call: no thread waits for the
    /// commit); throws when the kernel could not store it.
    func append(action: String, target: String, details: [String: JSONValue], portal: Portal) async throws {
        try await host.audit(action: action, target: target, details: details, portal: portal)
    }
}

/// The plugin's one exported symbol.
@_cdecl("meltybase_plugin_entry")
public func meltybasePluginEntry() -> UnsafeRawPointer {
    PluginExport.descriptor(for: VaultPlugin.self)
}
