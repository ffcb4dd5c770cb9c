import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import PortalDatabaseCore
import Synchronization

/// The Database plugin: one Postgres database per portal with a PostgREST-compatible REST
/// API (`/rest/v1`), GoTrue-compatible user auth (`/auth/v1`) and a SQL console (`/sql/v1`),
/// all under Postgres row-level security.
public final class DatabasePlugin: PortalPlugin {
    /// Name, version and route prefixes.
    public static let description = PluginDescription(name: "database", version: "0.1.0", routePrefix: "rest", extraRoutePrefixes: ["auth", "sql"])

    /// The Database page (ABI 1.5), shipped as the target's `Studio` resource folder.
    public static var studio: StudioDefinition? {
        StudioDefinition(directory: "MeltyBase_DatabasePlugin.resources/Studio", pages: [StudioPageDefinition(id: "tables", title: "Database", module: "database.js")])
    }

    /// `meltybase database migrate | conninfo`.
    public static var commands: [PluginCommandDefinition] { DatabaseCommands.all }

    /// Health (ABI 1.5): whether the kernel's Postgres server answers a query.
    public static var healthCheck: (@Sendable () async -> PluginHealthReport)? {
        {
            guard let shared = shared.withLock({ $0 }) else { return PluginHealthReport(.failing, "the plugin is not started") }
            do {
                let connection = try await PostgresConnection.connect(shared.host.postgresConninfo(), on: shared.loop)
                defer { connection.close() }
                _ = try await connection.query("SELECT 1")
                return PluginHealthReport(.ok, "Postgres answers")
            } catch {
                return PluginHealthReport(.failing, "Postgres does not answer: \(error)")
            }
        }
    }

    /// Settings from `[plugins.database.config]`.
    struct Settings {
        var poolSize = 8
        var maxWaiting = 256
        var schemas = ["public"]
        var statementTimeoutMilliseconds = 30_000
        var maxRows: Int?
        /// Whether REST requests may ask for execution plans (PostgREST's `db-plan-enabled`).
        var planEnabled = false
        /// Email flows and anonymous sign-in of `/auth/v1` (AuthSettings.swift).
        var auth = AuthSettings()

        init(_ config: PluginConfig) throws {
            poolSize = try config.integer("pool_size", in: 1...200, plugin: "database") ?? poolSize
            maxWaiting = try config.integer("max_waiting", in: 0...100_000, plugin: "database") ?? maxWaiting
            statementTimeoutMilliseconds = try config.integer("statement_timeout_ms", in: 100...3_600_000, plugin: "database") ?? statementTimeoutMilliseconds
            maxRows = try config.integer("max_rows", in: 1...10_000_000, plugin: "database")
            planEnabled = try config.boolean("plan_enabled", plugin: "database") ?? planEnabled
            if config["schemas"] != nil {
                guard let list = try? config.strings("schemas", plugin: "database"), !list.isEmpty,
                    list.allSatisfy({ !$0.isEmpty && $0 != "auth" && !$0.hasPrefix("pg_") && $0 != "meltybase_internal" })
                else {
                    throw PluginError.invalid("database: config key 'schemas' must be a non-empty list of schema names (not auth, pg_*, meltybase_internal)")
                }
                schemas = list
            }
            auth = try AuthSettings(config)
            try config.refuseUnknownKeys(
                Set(["pool_size", "max_waiting", "schemas", "statement_timeout_ms", "max_rows", "plan_enabled"]).union(AuthSettings.keys), plugin: "database")
        }
    }

    /// What `start` set up, for every instance: the host, the settings and the event loop
    /// that drives every Postgres connection of the plugin.
    struct Shared: Sendable {
        var host: PluginHostServices
        var settings: Settings
        var loop: PostgresEventLoop
    }
    private static let shared = Mutex<Shared?>(nil)

    let portal: Portal
    let systemConninfo: String
    let rest: RestHandler
    let auth: AuthHandler
    let console: SQLConsole
    private let pools: [PostgresPool]
    private let provisioned = OneTimeSetup()
    private let listener: Task<Void, Never>
    private let loop: PostgresEventLoop

    /// Global start: keeps the host and checks the configuration.
    public static func start(host: PluginHostServices, config: PluginConfig) throws {
        let settings = try Settings(config)
        shared.withLock { $0 = Shared(host: host, settings: settings, loop: PostgresEventLoop(name: "meltybase-database-pg")) }
    }

    /// Process shutdown: stops what `start` started.
    public static func shutdown() {
        shared.withLock { shared in
            shared?.loop.shutdown()
            shared = nil
        }
    }

    /// The instance for `portal`.
    public init(portal: Portal, config: PluginConfig) throws {
        guard let shared = Self.shared.withLock({ $0 }) else { throw PluginError.invalid("database: the plugin was not started") }
        let settings = shared.settings, host = shared.host, loop = shared.loop
        self.portal = portal
        self.loop = loop
        let systemConninfo = try host.postgresConninfo(portal: portal)
        self.systemConninfo = systemConninfo
        let timeout = String(settings.statementTimeoutMilliseconds)
        let prepare: @Sendable (PostgresConnection) async throws -> Void = { connection in
            try await connection.query("SELECT set_config('statement_timeout', $1, false)", [timeout])
        }
        let restPool = PostgresPool(
            conninfo: PortalProvisioner.conninfo(systemConninfo, portal: portal.name, user: "authenticator"),
            size: settings.poolSize, maxWaiting: settings.maxWaiting, loop: loop, prepare: prepare)
        let authPool = PostgresPool(
            conninfo: PortalProvisioner.conninfo(systemConninfo, portal: portal.name),
            size: max(2, settings.poolSize / 2), maxWaiting: settings.maxWaiting, loop: loop, prepare: prepare)
        let ownerPool = PostgresPool(
            conninfo: PortalProvisioner.conninfo(systemConninfo, portal: portal.name, user: PortalProvisioner.ownerRole(portal.name)),
            size: 2, maxWaiting: 64, loop: loop, prepare: prepare)
        pools = [restPool, authPool, ownerPool]
        let rest = RestHandler(pool: restPool, schemas: settings.schemas, maxRows: settings.maxRows, planEnabled: settings.planEnabled)
        self.rest = rest
        auth = AuthHandler(pool: authPool, portal: portal, host: host, settings: settings.auth, loop: loop)
        console = SQLConsole(pool: ownerPool, host: host, portal: portal)
        // DDL announces itself (`NOTIFY pgrst`); after an outage anything may have changed.
        let schemaListener = PostgresListener(conninfo: PortalProvisioner.conninfo(systemConninfo, portal: portal.name), channels: ["pgrst"], loop: loop)
        listener = Task {
            await schemaListener.run { event in
                switch event {
                case .notification, .listening: rest.invalidate()
                case .lost: break
                }
            }
        }
        // Creating the portal creates its database; if Postgres is down now, the first request retries.
        let provisioned = self.provisioned
        Task {
            do {
                try await provisioned.ensure { try await PortalProvisioner.provision(portal: portal.name, systemConninfo: systemConninfo, loop: loop) }
                host.log(.info, "portal database \(PortalProvisioner.databaseName(portal.name)) ready", portal: portal)
            } catch {
                host.log(.warning, "portal database not provisioned yet (will retry on the next request): \(error)", portal: portal)
            }
        }
    }

    /// Answers one request on the plugin\'s prefixes.
    public func handle(_ request: PluginRequest) async -> PluginResponse {
        if !provisioned.isDone {
            do {
                try await provisioned.ensure { [portal, systemConninfo, loop] in
                    try await PortalProvisioner.provision(portal: portal.name, systemConninfo: systemConninfo, loop: loop)
                }
            } catch {
                var response = RestError.unavailable("the portal database is not available yet: \(error)")
                response.headers.append(("retry-after", "1"))
                return response
            }
        }
        // Every API is versioned: /rest/v1, /auth/v1, /sql/v1.
        var request = request
        guard request.path == "/v1" || request.path.hasPrefix("/v1/") else {
            var response = PluginResponse.error(
                status: 404, code: "not_found", message: "no route \(request.routePrefix)\(request.path)",
                hint: "the APIs live under /\(request.routePrefix)/v1/")
            Self.addCORS(&response, request: request)
            return response
        }
        request.path = String(request.path.dropFirst(3))
        if request.path.isEmpty { request.path = "/" }
        var response: PluginResponse
        if request.method == "OPTIONS" {
            // CORS preflight: browsers send it without credentials.
            response = PluginResponse(status: 204)
            Self.addCORS(&response, request: request)
            return response
        }
        switch request.routePrefix {
        case "auth": response = await auth.handle(request)
        case "sql": response = await console.handle(request)
        default:
            if request.method == "OPTIONS" {
                response = PluginResponse(status: 204)
            } else {
                switch Self.role(for: request.credential) {
                case .success(let role): response = await rest.handle(request, role: role)
                case .failure(let refusal): response = refusal.response
                }
            }
        }
        Self.addCORS(&response, request: request)
        return response
    }

    /// Headers allowed when a preflight does not list the ones it wants.
    static let corsAllowedHeaders = "authorization, apikey, content-type, prefer, range, accept-profile, content-profile, x-client-info, x-supabase-api-version"

    /// CORS for browser clients (supabase-js): any origin; a preflight gets the headers it asks
    /// for (newer clients add headers such as `x-supabase-api-version`), like Supabase's gateway.
    static func addCORS(_ response: inout PluginResponse, request: PluginRequest) {
        guard request.header("origin") != nil else { return }
        var allowed = corsAllowedHeaders
        if let requested = request.header("access-control-request-headers"), !requested.isEmpty, requested.utf8.count <= 2048,
            requested.utf8.allSatisfy({
                $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
                    || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0 | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
            })
        {
            allowed = requested
        }
        response.headers += [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD"),
            ("access-control-allow-headers", allowed),
            ("access-control-expose-headers", "content-range, content-location, preference-applied"),
        ]
    }

    /// The database role and claims a request runs with, as PostgREST derives them from the JWT.
    static func role(for credential: PluginCredential) -> Result<RequestRole, RestResponse> {
        switch credential.kind {
        case .none:
            return .success(RequestRole(role: "anon", claimsJSON: "{\"role\":\"anon\"}"))
        case .plugin:
            // Never on a request (the kernel does not issue it); a service call gets no role.
            return .failure(
                RestResponse(RestError.response(status: 401, code: "PGRST301", message: "a plugin's own credential opens no database role")))
        case .invalid:
            let expired = credential.reason?.contains("expired") == true
            return .failure(
                RestResponse(
                    RestError.response(
                        status: 401, code: expired ? "PGRST303" : "PGRST301", message: credential.reason ?? "invalid JWT",
                        headers: [("www-authenticate", "Bearer error=\"invalid_token\"")])))
        case .admin:
            let claims = "{\"role\":\"service_role\",\"sub\":\(JSONStringWriter.quoted(credential.subject ?? "")),\"meltybase_admin\":true}"
            return .success(RequestRole(role: "service_role", claimsJSON: claims))
        case .portal:
            let role = credential.role ?? "anon"
            guard ["anon", "authenticated", "service_role"].contains(role) else {
                return .failure(
                    RestResponse(
                        RestError.response(
                            status: 401, code: "PGRST301", message: "the JWT role \"\(role)\" is not one this API switches to",
                            hint: "use anon, authenticated or service_role")))
            }
            return .success(RequestRole(role: role, claimsJSON: String(decoding: credential.claimsJSON, as: UTF8.self)))
        }
    }

    /// Closes the instance\'s pools and listeners.
    public func stop() {
        listener.cancel()
        pools.forEach { $0.close() }
    }
}

/// The plugin's one exported symbol.
@_cdecl("meltybase_plugin_entry")
public func meltybasePluginEntry() -> UnsafeRawPointer { PluginExport.descriptor(for: DatabasePlugin.self) }
