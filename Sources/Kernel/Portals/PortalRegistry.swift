import Foundation
import Logging
import NIOConcurrencyHelpers

/// Portals (tenants) and the plugin instances each has enabled.
///
/// The system database is the source of truth (`meltybase.portals`,
/// `meltybase.portal_plugins`); portals declared in `plugins.toml` are written there at
/// start-up with exactly the plugins the file lists. Every kernel reloads on the
/// `meltybase_portals` notification, so `meltybase portal enable` takes effect without a
/// restart, on every node.
public final class PortalRegistry: Sendable {
    /// A portal as this process sees it.
    final class Portal: Sendable {
        let handle: PortalHandle
        let instances: NIOLockedValueBox<[String: PluginInstance]>
        let rateLimit: TokenBucketConfig?

        init(handle: PortalHandle, rateLimit: TokenBucketConfig?, instances: NIOLockedValueBox<[String: PluginInstance]>) {
            self.handle = handle
            self.rateLimit = rateLimit
            self.instances = instances
        }
    }

    private let database: SystemDatabase
    private let host: PluginHost
    private let config: KernelConfig
    private let logger: Logger
    private let portals = NIOLockedValueBox<[String: Portal]>([:])
    /// The last reload's apply step; each reload applies after the one before it (an async
    /// turn, not a lock: `instance_create` runs on the blocking pool meanwhile).
    private let lastApply = NIOLockedValueBox<Task<Void, Never>?>(nil)
    private let reloadTickets = NIOLockedValueBox<(issued: Int, applied: Int)>((0, 0))
    /// Handles of dropped portals, kept for in-flight uses until the kernel goes.
    private let retiredHandles = NIOLockedValueBox<[PortalHandle]>([])
    /// Signs and verifies portal credentials (nil: every credential is `invalid`).
    let keys: PortalKeys?
    /// The kernel's host state, shared by its portal handles.
    let context: HostContext
    /// The kernel's one sink for plugins' audit calls: one group-commit queue for every portal.
    let audit: AuditLogSink
    /// Where the portals' plugins may send `http_fetch` requests.
    let egress: EgressPolicy
    /// Counts each portal's usage (nil: not metered).
    let meter: UsageMeter?

    /// A registry over `database` creating instances of `host`'s plugins; `keys` and
    /// `conninfo` are what the portals' plugins reach through the host.
    public init(
        database: SystemDatabase, host: PluginHost, config: KernelConfig, logger: Logger, keys: PortalKeys? = nil, audit: AuditLogSink? = nil,
        meter: UsageMeter? = nil
    ) {
        self.database = database
        self.host = host
        self.config = config
        self.logger = logger
        self.keys = keys
        self.context = host.context
        self.audit = audit ?? AuditLogSink(database: database)
        self.egress = EgressPolicy(config: config)
        self.meter = meter
    }

    /// Writes the portals declared in the config to the system database.
    public func applyDeclaredPortals() async throws {
        let declared = config.portals
        try await database.withConnection { connection in
            for portal in declared {
                try await connection.query("BEGIN")
                do {
                    try await connection.query("INSERT INTO meltybase.portals (name) VALUES ($1) ON CONFLICT DO NOTHING", [portal.name])
                    try await connection.query(
                        "DELETE FROM meltybase.portal_plugins WHERE portal = $1 AND NOT (plugin = ANY($2::text[]))",
                        [portal.name, PostgresArrayLiteral.text(portal.plugins)])
                    for plugin in portal.plugins {
                        try await connection.query(
                            "INSERT INTO meltybase.portal_plugins (portal, plugin) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            [portal.name, plugin])
                    }
                    try await connection.query("COMMIT")
                } catch {
                    try? await connection.query("ROLLBACK")
                    throw error
                }
            }
        }
    }

    /// Re-reads portals and enabled plugins, creating and retiring instances to match.
    /// Reloads may overlap (one per notification); each takes a ticket before reading, and a
    /// read older than one already applied is dropped, so a slow reload never undoes a newer one.
    public func reload() async throws {
        let ticket = reloadTickets.withLockedValue { state -> Int in
            state.issued += 1
            return state.issued
        }
        let rows = try await database.withConnection { connection in
            try await connection.query(
                """
                SELECT p.name, coalesce(array_to_json(array_agg(pp.plugin ORDER BY pp.plugin) FILTER (WHERE pp.plugin IS NOT NULL))::text, '[]')
                FROM meltybase.portals p LEFT JOIN meltybase.portal_plugins pp ON pp.portal = p.name
                GROUP BY p.name ORDER BY p.name
                """
            ).rows
        }
        var wanted: [String: [String]] = [:]
        for row in rows {
            let list = (try? JSONSerialization.jsonObject(with: Data((row[1] ?? "[]").utf8))) as? [String] ?? []
            wanted[row[0] ?? ""] = list
        }
        let target = wanted
        let turn = lastApply.withLockedValue { last -> Task<Void, Never> in
            let previous = last
            let task = Task { [target] in
                await previous?.value
                let stale = self.reloadTickets.withLockedValue { state -> Bool in
                    if ticket < state.applied { return true }
                    state.applied = ticket
                    return false
                }
                if !stale { await self.apply(target) }
            }
            last = task
            return task
        }
        await turn.value
    }

    private func apply(_ wanted: [String: [String]]) async {
        let current = portals.withLockedValue { $0 }
        var next: [String: Portal] = [:]
        for (name, pluginNames) in wanted {
            let portal = current[name] ?? makePortal(name)
            let existing = portal.instances.withLockedValue { $0 }
            var instances: [String: PluginInstance] = [:]
            for pluginName in pluginNames {
                if let instance = existing[pluginName] {
                    instances[pluginName] = instance
                } else if let plugin = host.plugin(named: pluginName) {
                    let json = config.plugins.first { $0.name == pluginName }?.configJSON ?? "{}"
                    do {
                        instances[pluginName] = try await PluginInstance.create(plugin: plugin, portal: portal.handle, configJSON: json)
                        logger.info("plugin enabled for portal", metadata: ["portal": "\(name)", "plugin": "\(pluginName)"])
                    } catch {
                        logger.error("\(error)")
                    }
                } else {
                    logger.warning("portal enables a plugin that is not loaded", metadata: ["portal": "\(name)", "plugin": "\(pluginName)"])
                }
            }
            portal.instances.withLockedValue { $0 = instances }
            for (pluginName, instance) in existing where instances[pluginName] == nil {
                instance.retire()
                logger.info("plugin disabled for portal", metadata: ["portal": "\(name)", "plugin": "\(pluginName)"])
            }
            next[name] = portal
        }
        portals.withLockedValue { $0 = next }
        keys?.retainOnly(Set(next.keys))
        for (name, portal) in current where next[name] == nil {
            for instance in portal.instances.withLockedValue({ $0.values }) { instance.retire() }
            // Keep the handle alive for any in-flight use; it is small.
            retiredHandles.withLockedValue { $0.append(portal.handle) }
        }
    }

    private func makePortal(_ name: String) -> Portal {
        let instances = NIOLockedValueBox<[String: PluginInstance]>([:])
        let handle = PortalHandle(name: name, context: context, keys: keys, audit: audit, egress: egress, usage: meter?.usage(for: name)) { plugin in
            instances.withLockedValue { $0[plugin] }
        }
        let limit = config.portals.first { $0.name == name }?.rateLimit ?? config.rateLimit.perPortal
        return Portal(handle: handle, rateLimit: limit, instances: instances)
    }

    /// The portal called `name`, if it exists.
    func portal(_ name: String) -> Portal? { portals.withLockedValue { $0[name] } }

    /// Names of all portals, sorted.
    public var names: [String] { portals.withLockedValue { $0.keys.sorted() } }

    /// The plugins enabled for `portal`, sorted.
    public func enabledPlugins(of portal: String) -> [String] {
        self.portal(portal)?.instances.withLockedValue { $0.keys.sorted() } ?? []
    }

    /// Destroys every instance once its in-flight uses end (shutdown, before plugins' `shutdown`).
    public func shutdown() async {
        let all = portals.withLockedValue { portals -> [Portal] in
            defer { portals = [:] }
            return Array(portals.values)
        }
        for portal in all {
            for instance in portal.instances.withLockedValue({ $0.values }) { await instance.retireAndDestroy() }
            retiredHandles.withLockedValue { $0.append(portal.handle) }
        }
    }
}

/// Text arrays as Postgres array literals, so lists bind as one parameter.
enum PostgresArrayLiteral {
    /// `{"a","b"}` with quotes and backslashes escaped.
    static func text(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
    }
}
