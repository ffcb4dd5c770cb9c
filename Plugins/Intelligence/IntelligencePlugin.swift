import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import PortalDatabaseCore
import Synchronization

/// The Intelligence plugin: Sentient SQL (diagnoses of failed statements, RLS proposals),
/// OpenClaw agents and the Knowledge Mesh vector store, on the portal's own database.
///
/// Routes below `/p/<portal>/`: `agents/v1/...` (runs, steps as SSE), `vectors/v1/...`
/// (collections, search, federation) and `intelligence/v1/...` (provider settings, SQL
/// diagnosis, RLS proposals). The Database plugin's `POST /sql/v1/diagnose` reaches the
/// diagnosis through the JSON service `intelligence.v1`. Every feature works without a
/// model provider in its deterministic form and says so. See `docs/intelligence.md`.
public final class IntelligencePlugin: PortalPlugin {
    /// Name, version and prefixes: `agents` streams (SSE step feeds).
    public static let description = PluginDescription(
        name: "intelligence", version: "0.1.0", routePrefix: "agents", extraRoutePrefixes: ["vectors", "intelligence"], streamingRoutePrefixes: ["agents"])

    /// The Intelligence pages of the Studio.
    public static var studio: StudioDefinition? {
        StudioDefinition(
            directory: "MeltyBase_IntelligencePlugin.resources/Studio",
            pages: [
                StudioPageDefinition(id: "agents", title: "Agents", module: "agents.js"),
                StudioPageDefinition(id: "vectors", title: "Knowledge Mesh", module: "vectors.js"),
                StudioPageDefinition(id: "sentient-sql", title: "Sentient SQL", module: "sentient-sql.js"),
            ])
    }

    /// What `start` set up; nil before `start` and after `shutdown`.
    struct Runtime: Sendable {
        let host: PluginHostServices
        let settings: IntelligenceSettings
        /// Drives every pool's sockets.
        let loop: PostgresEventLoop
        /// The Knowledge Mesh hub's connections, shared by every portal.
        let meshHub: MeshHubPool
    }

    private static let current = Mutex<Runtime?>(nil)
    static var runtime: Runtime? { current.withLock { $0 } }

    /// What this portal's routes share.
    let context: IntelligencePortal

    /// Reads the settings and exports `intelligence.v1`.
    public static func start(host: PluginHostServices, config: PluginConfig) throws {
        let settings: IntelligenceSettings
        do {
            settings = try IntelligenceSettings(config: config)
        } catch {
            throw PluginError.invalid("intelligence: \(error)")
        }
        let loop = PostgresEventLoop(name: "meltybase-intelligence-postgres")
        let started = Runtime(host: host, settings: settings, loop: loop, meshHub: MeshHubPool(host: host, loop: loop))
        let previous = current.withLock { runtime in
            defer { runtime = started }
            return runtime
        }
        previous?.meshHub.close()
        previous?.loop.shutdown()
        try PluginExport.exportJSONService("intelligence", major: 1) { instance, method, argument in
            guard let plugin = instance as? IntelligencePlugin else { throw PluginError.invalid("intelligence.v1: wrong instance") }
            return try await IntelligenceService.call(context: plugin.context, method: method, argument: argument)
        }
    }

    /// Binds the portal to its database (the Database plugin creates it; the `intelligence`
    /// schema is installed on first use).
    public init(portal: Portal, config: PluginConfig) throws {
        guard let runtime = Self.runtime else { throw PluginError.unavailable("intelligence: the plugin is not started") }
        let system = try runtime.host.postgresConninfo(portal: portal)
        guard !system.isEmpty else { throw PluginError.unavailable("intelligence: the host gives no Postgres conninfo (needs ABI 1.1 or later)") }
        context = IntelligencePortal(
            host: runtime.host, settings: runtime.settings, portal: portal, systemConninfo: system, loop: runtime.loop, meshHub: runtime.meshHub)
    }

    /// Answers one request on the plugin's prefixes.
    public func handle(_ request: PluginRequest) async -> PluginResponse {
        var request = request
        guard request.path == "/v1" || request.path.hasPrefix("/v1/") else {
            return .error(status: 404, code: "not_found", message: "no route /\(request.routePrefix)\(request.path)", hint: "the APIs live under /\(request.routePrefix)/v1/")
        }
        request.path = String(request.path.dropFirst(3))
        if request.path.isEmpty { request.path = "/" }
        do {
            try await context.ensureSchema()
        } catch {
            var response = PluginResponse.error(
                status: 503, code: "intelligence_unavailable", message: "the portal database is not ready for the intelligence plugin: \(error)", hint: "retry shortly")
            response.headers.append(("retry-after", "1"))
            return response
        }
        switch request.routePrefix {
        case "vectors": return await VectorRoutes(context: context).handle(request)
        case "intelligence": return await IntelligenceRoutes(context: context).handle(request)
        default: return await AgentRoutes(context: context).handle(request)
        }
    }

    /// Stops the portal's background work (agent runs pause and resume later) and closes its pools.
    public func stop() {
        context.close()
    }

    /// Stops the Postgres loop.
    public static func shutdown() {
        let stopped = current.withLock { runtime in
            defer { runtime = nil }
            return runtime
        }
        stopped?.meshHub.close()
        stopped?.loop.shutdown()
    }
}

/// The plugin's one exported symbol.
@_cdecl("meltybase_plugin_entry")
public func meltybasePluginEntry() -> UnsafeRawPointer {
    PluginExport.descriptor(for: IntelligencePlugin.self)
}
