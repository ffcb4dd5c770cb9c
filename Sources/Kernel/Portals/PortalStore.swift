import Foundation

/// Portal records in the system database, for the command line and admin routes.
///
/// Changes fire the `meltybase_portals` notification, so running kernels apply them at once.
public struct PortalStore: Sendable {
    /// The system database the store writes to.
    public let database: SystemDatabase
    let config: KernelConfig

    /// A store over `database`, validating plugin names against `config`.
    public init(database: SystemDatabase, config: KernelConfig) {
        self.database = database
        self.config = config
    }

    /// Why a portal operation was refused.
    public struct Refusal: Error, CustomStringConvertible {
        /// What is wrong and what to do.
        public var description: String
        /// Which kind of refusal (the Hub routes answer 400, 404 or 409 from it).
        public var kind: Kind = .invalid

        /// Why the operation was refused.
        public enum Kind: Sendable {
            /// A bad name or an unknown plugin.
            case invalid
            /// The portal (or the enabled plugin) does not exist.
            case notFound
            /// The portal already exists.
            case conflict
        }
    }

    /// Work run inside a change's transaction just before it commits (the Hub appends the
    /// audit entry there, so the change and its entry commit together).
    public typealias InTransaction = @Sendable (PostgresConnection) async throws -> Void

    /// A portal and its enabled plugins.
    public struct Record: Sendable {
        /// Portal name.
        public var name: String
        /// Enabled plugins, sorted.
        public var plugins: [String]
        /// Creation time as Postgres prints it.
        public var createdAt: String
    }

    /// Creates a portal with `plugins` enabled.
    public func create(_ name: String, plugins: [String], inTransaction: InTransaction? = nil) async throws {
        try validate(name: name)
        try plugins.forEach(validate(plugin:))
        try await database.withConnection { connection in
            try await connection.query("BEGIN")
            do {
                let inserted = try await connection.query("INSERT INTO meltybase.portals (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING name", [name])
                guard !inserted.rows.isEmpty else { throw Refusal(description: "portal \"\(name)\" already exists", kind: .conflict) }
                for plugin in plugins {
                    try await connection.query("INSERT INTO meltybase.portal_plugins (portal, plugin) VALUES ($1, $2) ON CONFLICT DO NOTHING", [name, plugin])
                }
                try await inTransaction?(connection)
                try await connection.query("COMMIT")
            } catch {
                try? await connection.query("ROLLBACK")
                throw error
            }
        }
    }

    /// Every portal, sorted by name.
    public func list() async throws -> [Record] {
        try await database.withConnection { connection in
            try await connection.query(
                """
                SELECT p.name, p.created_at::text AS created_at,
                       coalesce(string_agg(pp.plugin, ',' ORDER BY pp.plugin), '') AS plugins
                FROM meltybase.portals p LEFT JOIN meltybase.portal_plugins pp ON pp.portal = p.name
                GROUP BY p.name, p.created_at ORDER BY p.name
                """
            ).rows.map { row in
                Record(name: row[0] ?? "", plugins: (row[2] ?? "").split(separator: ",").map(String.init), createdAt: row[1] ?? "")
            }
        }
    }

    /// Enables (`enabled: true`) or disables a plugin for a portal.
    public func set(portal: String, plugin: String, enabled: Bool, inTransaction: InTransaction? = nil) async throws {
        try validate(name: portal)
        if enabled { try validate(plugin: plugin) }
        try await database.withConnection { connection in
            try await connection.query("BEGIN")
            do {
                guard !(try await connection.query("SELECT 1 FROM meltybase.portals WHERE name = $1", [portal])).rows.isEmpty else {
                    throw Refusal(description: "portal \"\(portal)\" does not exist; create it with `meltybase portal create \(portal)`", kind: .notFound)
                }
                if enabled {
                    try await connection.query("INSERT INTO meltybase.portal_plugins (portal, plugin) VALUES ($1, $2) ON CONFLICT DO NOTHING", [portal, plugin])
                } else {
                    let deleted = try await connection.query("DELETE FROM meltybase.portal_plugins WHERE portal = $1 AND plugin = $2 RETURNING plugin", [portal, plugin])
                    guard !deleted.rows.isEmpty else { throw Refusal(description: "plugin \"\(plugin)\" is not enabled for portal \"\(portal)\"", kind: .notFound) }
                }
                try await inTransaction?(connection)
                try await connection.query("COMMIT")
            } catch {
                try? await connection.query("ROLLBACK")
                throw error
            }
        }
    }

    /// Deletes a portal and its plugin list; running kernels retire its instances.
    public func delete(_ name: String, inTransaction: InTransaction? = nil) async throws {
        try validate(name: name)
        try await database.withConnection { connection in
            try await connection.query("BEGIN")
            do {
                let deleted = try await connection.query("DELETE FROM meltybase.portals WHERE name = $1 RETURNING name", [name])
                guard !deleted.rows.isEmpty else { throw Refusal(description: "portal \"\(name)\" does not exist", kind: .notFound) }
                try await inTransaction?(connection)
                try await connection.query("COMMIT")
            } catch {
                try? await connection.query("ROLLBACK")
                throw error
            }
        }
    }

    /// A note when `portal` is declared in plugins.toml (the file is applied at every start).
    public func declaredNote(_ portal: String) -> String? {
        guard config.portals.contains(where: { $0.name == portal }) else { return nil }
        return "note: portal \"\(portal)\" is declared in \(config.sourcePath); its plugin list there is applied again at the next start"
    }

    private func validate(name: String) throws {
        guard PluginLoader.isValidName(name) else {
            throw Refusal(description: "portal name \"\(name)\" must be 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit")
        }
    }

    private func validate(plugin: String) throws {
        guard config.plugins.contains(where: { $0.name == plugin }) else {
            let known = config.plugins.map(\.name).joined(separator: ", ")
            throw Refusal(description: "unknown plugin \"\(plugin)\"; plugins declared in \(config.sourcePath): \(known.isEmpty ? "none" : known)")
        }
    }
}
