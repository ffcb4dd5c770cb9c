import Foundation
import MeltyPluginSDK
import MeltyPostgres
import PortalDatabaseCore
import Synchronization

/// What every route of one portal shares: the host, the settings, and the portal's
/// database as its owner role and as `authenticator` (which switches into a caller's role,
/// so row-level security applies exactly as on the REST API).
final class IntelligencePortal: Sendable {
    let host: PluginHostServices
    let settings: IntelligenceSettings
    let portal: Portal
    let loop: PostgresEventLoop
    /// The portal database as its owner role: the `intelligence` schema and its tables.
    let owner: PostgresPool
    /// The portal database as `authenticator`: work done for a caller under the caller's role.
    let authenticator: PostgresPool
    /// The Knowledge Mesh's loaded indexes.
    let vectors: PortalVectors
    /// The running agents.
    let agents: PortalAgents
    /// The model provider's API key, read from the portal's Vault and kept a short while.
    let providerKeys = ProviderKeyCache()
    private let schemaInstalled = Mutex(false)

    init(host: PluginHostServices, settings: IntelligenceSettings, portal: Portal, systemConninfo: String, loop: PostgresEventLoop, meshHub: MeshHubPool) {
        self.host = host
        self.settings = settings
        self.portal = portal
        self.loop = loop
        owner = PostgresPool(
            conninfo: Conninfo.derive(PortalDatabaseNames.conninfo(systemConninfo, portal: portal.name), overrides: ["application_name": "meltybase-intelligence"]),
            size: 4, maxWaiting: 1_000, loop: loop)
        authenticator = PostgresPool(
            conninfo: Conninfo.derive(
                PortalDatabaseNames.conninfo(systemConninfo, portal: portal.name, user: "authenticator"), overrides: ["application_name": "meltybase-intelligence"]),
            size: 4, maxWaiting: 1_000, loop: loop)
        vectors = PortalVectors(host: host, portal: portal, owner: owner, settings: settings.vectors, hub: meshHub)
        agents = PortalAgents(host: host, portal: portal, owner: owner, settings: settings.agents)
        // Runs a killed kernel left working resume now, not at the portal's next agents request.
        agents.bind(self)
    }

    /// Installs the `intelligence` schema once (each part's tables, idempotent DDL).
    func ensureSchema() async throws {
        if schemaInstalled.withLock({ $0 }) { return }
        try await owner.run { connection in
            _ = try await connection.execute("CREATE SCHEMA IF NOT EXISTS intelligence")
            for script in IntelligenceSchema.scripts { _ = try await connection.execute(script) }
        }
        schemaInstalled.withLock { $0 = true }
    }

    /// Closes the pools.
    func close() {
        vectors.close()
        agents.close()
        owner.close()
        authenticator.close()
    }
}

/// The DDL of the `intelligence` schema, one script per part (each idempotent: `IF NOT EXISTS`).
enum IntelligenceSchema {
    /// Run in order by ``IntelligencePortal/ensureSchema()``.
    static let scripts: [String] = [ProviderSettingsStore.schema, VectorRoutes.schema, IntelligenceRoutes.schema, AgentRoutes.schema]
}
