import Foundation
import Logging
import MeltyEmbedded
import MeltyRedis
import Metrics
import NIOConcurrencyHelpers
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The running kernel: embedded services, system database, plugins, portals and gateway.
///
/// `run()` starts everything in order, serves until SIGTERM or SIGINT, then shuts down
/// gracefully: listeners stop accepting, in-flight requests finish, plugin instances are
/// destroyed, and the embedded Postgres and Redis are stopped last.
public final class Kernel: Sendable {
    /// The validated configuration.
    public let config: KernelConfig
    private let logger: Logger
    private let embedded = NIOLockedValueBox<(postgres: EmbeddedPostgres?, redis: EmbeddedRedis?)>((nil, nil))
    private let settings = NIOLockedValueBox<Settings>(Settings())

    /// What the embedding code sets before `run()`.
    private struct Settings {
        var onListening: (@Sendable (String) -> Void)?
        var inheritedListeners: [CInt] = []
        var ownsEmbeddedServices = true
    }
    private let boundPorts = NIOLockedValueBox<[Int]>([])
    private let servedRoutes = NIOLockedValueBox<[RouteRecorder.Route]>([])
    private let startedPortalKeys = NIOLockedValueBox<PortalKeys?>(nil)
    private let startedPlugins = NIOLockedValueBox<PluginHost?>(nil)
    private let startedPortals = NIOLockedValueBox<PortalRegistry?>(nil)
    private let hostContext = NIOLockedValueBox<HostContext?>(nil)

    /// Called with every bound listener URL once it accepts connections.
    public var onListening: (@Sendable (String) -> Void)? {
        get { settings.withLockedValue { $0.onListening } }
        set { settings.withLockedValue { $0.onListening = newValue } }
    }

    /// Listening sockets handed down by a supervisor, one per configured listener in order;
    /// empty (the default): the kernel binds the listeners' addresses itself.
    public var inheritedListeners: [CInt] {
        get { settings.withLockedValue { $0.inheritedListeners } }
        set { settings.withLockedValue { $0.inheritedListeners = newValue } }
    }

    /// Whether this kernel starts the embedded Postgres and Redis and takes the data
    /// directory's lock. A supervised worker does neither: its supervisor owns both and
    /// passes their addresses in `config` (`MELTYBASE_DATABASE_URL`, `MELTYBASE_REDIS_URL`).
    public var ownsEmbeddedServices: Bool {
        get { settings.withLockedValue { $0.ownsEmbeddedServices } }
        set { settings.withLockedValue { $0.ownsEmbeddedServices = newValue } }
    }

    /// A kernel for `config` logging to `logger`.
    public init(config: KernelConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// The process-wide Prometheus registry behind `/metrics` (metrics bootstrap once per process).
    public static let metricsRegistry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    /// Starts the embedded Postgres if configured so, and returns the conninfo to use.
    public func databaseConninfo() throws -> String {
        if let url = config.databaseURL { return url }
        if let running = embedded.withLockedValue({ $0.postgres }) { return running.conninfo }
        guard ownsEmbeddedServices else { throw SupervisorError.missingServiceAddress("MELTYBASE_DATABASE_URL") }
        let postgres = try config.embeddedPostgres(logger: logger)
        try postgres.start()
        embedded.withLockedValue { $0.postgres = postgres }
        return postgres.conninfo
    }

    /// Starts the embedded Redis if configured so, and returns its URL.
    public func redisURL() throws -> String {
        if let url = config.redisURL { return url }
        if let running = embedded.withLockedValue({ $0.redis }) { return running.url }
        guard ownsEmbeddedServices else { throw SupervisorError.missingServiceAddress("MELTYBASE_REDIS_URL") }
        let redis = EmbeddedRedis(dataDirectory: config.dataDirectory, logger: logger)
        try redis.start()
        embedded.withLockedValue { $0.redis = redis }
        return redis.url
    }

    /// The system database's conninfo when it is up without this call starting anything: the
    /// external `database_url`, or the embedded Postgres of a running kernel; nil otherwise.
    public func runningSystemConninfo() throws -> String? {
        if let url = config.databaseURL { return url }
        let postgres = try config.embeddedPostgres(logger: logger)
        return DataDirectoryLock.isHeld(dataDirectory: config.dataDirectory) || postgres.isRunning ? postgres.conninfo : nil
    }

    /// Runs `body` against the system database for a command-line tool: an external URL,
    /// the embedded Postgres of a running kernel, or the embedded Postgres started just
    /// for this call (and stopped after it).
    public func withSystemDatabase<T>(_ body: (SystemDatabase) async throws -> T) async throws -> T {
        if let conninfo = try runningSystemConninfo() {
            let database = SystemDatabase(conninfo: conninfo)
            defer { database.close() }
            return try await body(database)
        }
        let postgres = try config.embeddedPostgres(logger: logger)
        try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        let lock = try DataDirectoryLock(dataDirectory: config.dataDirectory)
        defer { withExtendedLifetime(lock) {} }
        try postgres.start()
        defer { postgres.stop() }
        let database = SystemDatabase(conninfo: postgres.conninfo)
        defer { database.close() }
        try await database.migrate()
        return try await body(database)
    }

    /// Stops the embedded servers this kernel started.
    public func stopEmbeddedServices() {
        let (postgres, redis) = embedded.withLockedValue { embedded in
            defer { embedded = (nil, nil) }
            return embedded
        }
        redis?.stop()
        postgres?.stop()
    }

    /// Runs until a shutdown signal (or until `ServiceGroup` cancellation in tests).
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        let metrics = Self.metricsRegistry
        // 0711: the unprivileged account running the embedded Postgres may pass through
        // to its own folder, but nobody else may list or read the data directory.
        try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        let lock = ownsEmbeddedServices && (config.usesEmbeddedPostgres || config.usesEmbeddedRedis) ? try DataDirectoryLock(dataDirectory: config.dataDirectory) : nil
        defer {
            stopEmbeddedServices()
            withExtendedLifetime(lock) {}
        }

        let conninfo = try databaseConninfo()
        // The kernel's Postgres event loop: drives the system database's pool and the
        // portal listener; stopped after them when the kernel stops.
        let postgresLoop = PostgresEventLoop(name: "meltybase-postgres")
        let database = SystemDatabase(conninfo: conninfo, loop: postgresLoop)
        defer {
            database.close()
            postgresLoop.shutdown()
        }
        try await database.migrate()

        // The key set: loaded (created on a first start) and checked against the cluster's
        // before anything is sealed, signed or served (docs/cluster.md, "One key set").
        let sealingKey = try SecretBox.loadOrCreate(directory: config.keysDirectory)
        let auditKey = try AuditSigningKey.loadOrCreate(directory: config.keysDirectory)
        let initialized = try await database.withConnection { connection in
            try await connection.query("SELECT is_initialized FROM meltybase.system_state").value("is_initialized") == "t"
        }
        // Without a vendor key, licenses verify with this machine's evaluation key.
        let evaluation = try EvaluationLicense.prepare(config: config, initialized: initialized, logger: logger)
        let keySet = ClusterKeySet(
            sealing: sealingKey, auditPublicKey: auditKey.publicKey, keysDirectory: config.keysDirectory, evaluation: evaluation,
            vendorKeyConfigured: !(config.licensePublicKey ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        if let mismatch = try await keySet.check(on: database, registeredBy: ClusterKeySet.registrant(keysDirectory: config.keysDirectory)) {
            throw mismatch
        }
        // The vault reads it through [plugins.vault.config] master_key_file (unless
        // MELTYBASE_MASTER_KEY is set): made here, once the set is the cluster's, so a first
        // start has one. A read-only key folder (a mounted secret) is left as it is.
        if access(config.keysDirectory, W_OK) == 0 {
            try ClusterKeySet.createVaultMasterKeyIfMissing(directory: config.keysDirectory)
        }

        let redis: RedisClient?
        do {
            redis = try RedisClient(url: try redisURL())
        } catch {
            logger.warning("Redis is not available; rate limits apply per kernel process", metadata: ["error": "\(error)"])
            redis = nil
        }
        let rateLimiter = RateLimiter(redis: redis, logger: logger)

        let pluginAudit = AuditLogSink(database: database)
        // This kernel's state behind the C host functions, and its pool for blocking work.
        let context = HostContext(logger: logger, audit: pluginAudit, conninfo: conninfo, redisURL: redis?.url)
        hostContext.withLockedValue { $0 = context }
        defer { Task { await context.close() } }
        let checkpoints = AuditCheckpointService(database: database, signingKey: auditKey, logger: logger)
        let plugins = try await PluginHost(configs: config.plugins, context: context)
        startedPlugins.withLockedValue { $0 = plugins }
        let portalKeys = PortalKeys(database: database, box: sealingKey)
        startedPortalKeys.withLockedValue { $0 = portalKeys }
        // Usage per portal, flushed to the system database (docs/hub.md).
        let meter = UsageMeter(settings: config.hub)
        let portals = PortalRegistry(database: database, host: plugins, config: config, logger: logger, keys: portalKeys, audit: pluginAudit, meter: meter)
        startedPortals.withLockedValue { $0 = portals }
        try await portals.applyDeclaredPortals()
        try await portals.reload()

        let state = SystemState(isInitialized: initialized)
        var licensing = config
        if let evaluation { licensing.licensePublicKey = evaluation.publicKeyHex }
        let identity = AdminIdentity(
            database: database, state: state, redis: redis, keysDirectory: config.keysDirectory, logger: logger,
            blocking: context.blocking)
        var systemRoutes = SystemRoutes(
            state: state, plugins: plugins, portals: portals, rateLimiter: rateLimiter, metrics: metrics,
            setup: SetupRoute(service: SetupService(database: database, state: state, config: licensing, logger: logger, blocking: context.blocking)),
            adminAPI: AdminAPIRoutes(
                identity: identity, portals: PortalStore(database: database, config: config), database: database,
                keysDirectory: config.keysDirectory, licensePublicKey: licensing.licensePublicKey, portalKeys: portalKeys))
        systemRoutes.licenseChecks = LicenseCheckRoutes(state: state, publicKey: licensing.licensePublicKey, evaluation: evaluation, identity: identity)
        systemRoutes.studio = StudioRoutes(assets: StudioAssets.load(logger: logger), plugins: plugins)
        systemRoutes.bodyLimit = config.bodyLimitBytes
        let usageStore = UsageStore(database: database)
        let usageFlusher = UsageFlusher(meter: meter, store: usageStore, audit: pluginAudit, logger: logger) { portals.names }
        systemRoutes.usage = HubUsageRoutes(identity: identity, store: usageStore, meter: meter, flusher: usageFlusher)
        var gateway = Gateway(
            config: config, plugins: plugins, portals: portals, rateLimiter: rateLimiter, systemRoutes: systemRoutes, logger: logger,
            inheritedListeners: inheritedListeners)
        let routes = servedRoutes
        gateway.onRoutes = { recorded in routes.withLockedValue { $0 = recorded } }
        let announce = onListening
        let logger = self.logger
        let ports = boundPorts
        let applications = try gateway.applications { listener, port in
            let url = "\(listener.scheme)://\(listener.host):\(port)"
            ports.withLockedValue { $0.append(port) }
            logger.notice("MeltyBase is listening on \(url)", metadata: ["mtls": "\(listener.clientCAPath != nil)"])
            if !state.isInitialized {
                logger.notice(
                    "Not initialized yet: open \(SetupService.studioURL(listener, port: port)) to set up in the Studio (or POST \(url)/v1/system/setup, or `meltybase setup`)")
            }
            announce?(url)
        }
        let listener = PortalChangeListener(conninfo: conninfo, loop: postgresLoop, portals: portals, logger: logger) {
            // Setup done by another kernel or `meltybase setup`: the pulse follows.
            if let flag = try? await database.withConnection({ try await $0.query("SELECT is_initialized FROM meltybase.system_state").value("is_initialized") }) {
                state.isInitialized = flag == "t"
            }
        }
        let group = ServiceGroup(
            configuration: .init(
                // The flusher first: a graceful shutdown stops it last, after the listeners, so it writes the final counts.
                services: [.init(service: usageFlusher), .init(service: listener), .init(service: checkpoints)] + applications.map { .init(service: $0) },
                gracefulShutdownSignals: signals,
                logger: logger))
        do {
            try await group.run()
        } catch {
            // Cancelled or failed: the instances and this kernel's use of the plugin
            // libraries still end here, so a later kernel in the process starts them afresh.
            await context.webSockets.closeAll(code: 1001, reason: "the server is shutting down", grace: .seconds(1))
            await portals.shutdown()
            await plugins.shutdown()
            throw error
        }
        // WebSocket connections are served in their pipelines, not by the listeners' tasks:
        // they end here (each plugin hears ws_close) before the plugins stop.
        await context.webSockets.closeAll(code: 1001, reason: "the server is shutting down")
        await portals.shutdown()
        await plugins.shutdown()
        logger.notice("MeltyBase stopped")
    }

    /// The running kernel's portal keys (mint API keys in tests and tools); nil before `run` set them up.
    public var portalKeys: PortalKeys? { startedPortalKeys.withLockedValue { $0 } }
    /// The portal registry of the running kernel (nil before `run()` has set it up).
    var runningPortals: PortalRegistry? { startedPortals.withLockedValue { $0 } }

    /// Requests this kernel handed to plugins that have not come back yet (other kernels in the process excluded).
    public var pendingPluginRequests: Int {
        hostContext.withLockedValue { $0 }?.pending.count ?? 0
    }

    /// This kernel's host state (nil before `run()` has set it up).
    var runningHostContext: HostContext? { hostContext.withLockedValue { $0 } }

    /// Every (method, path) the HTTP router serves; empty before `run` registered them.
    var registeredRoutes: [RouteRecorder.Route] { servedRoutes.withLockedValue { $0 } }

    /// Ports bound so far (listeners configured with port 0 get a free one).
    public var listeningPorts: [Int] { boundPorts.withLockedValue { $0 } }
}
