import ArgumentParser
import Foundation
import Kernel
import Logging

/// `meltybase portal create|list|enable|disable|psql`
struct PortalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portal", abstract: "Manage portals (tenants) and the plugins each enables.",
        discussion: "Changes are written to the system database; running kernels apply them at once.",
        subcommands: [Create.self, List.self, Enable.self, Disable.self, Psql.self])

    /// Runs `body` with a portal store on the configured (or embedded) system database.
    static func withStore<T>(_ options: ConfigOptions, _ body: (PortalStore) async throws -> T) async throws -> T {
        let config = try options.load()
        var logger = Logger(label: "meltybase")
        logger.logLevel = .warning
        do {
            return try await Kernel(config: config, logger: logger).withSystemDatabase { database in
                try await body(PortalStore(database: database, config: config))
            }
        } catch let refusal as PortalStore.Refusal {
            throw CommandError(refusal.description)
        }
    }

    /// Enables or disables `plugin` for `portal` and says what happened.
    static func setPlugin(_ options: ConfigOptions, portal: String, plugin: String, enabled: Bool) async throws {
        let note = try await withStore(options) { store in
            try await store.set(portal: portal, plugin: plugin, enabled: enabled)
            return store.declaredNote(portal)
        }
        print("\(enabled ? "enabled" : "disabled") \(plugin) for portal \(portal)")
        if let note { print(note) }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a portal, optionally enabling plugins.")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "Portal name (a-z, 0-9, '-', '_').") var name: String
        @Option(
            name: .customLong("plugins"), parsing: .upToNextOption,
            help: "Plugins to enable (names from plugins.toml), separated by spaces or commas: --plugins database realtime.")
        var pluginArguments: [String] = []

        /// The plugin names, whether given as `a b` or `a,b`.
        var plugins: [String] { pluginArguments.flatMap { $0.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) } }.filter { !$0.isEmpty } }

        func run() async throws {
            let config = try options.load()
            let keys = try await PortalCommand.withStore(options) { store in
                // The key first: a machine with another key set must not create a portal whose
                // JWT secret no kernel of the cluster can open.
                let box: SecretBox
                do {
                    box = try await ClusterKeySet.sealingKey(keysDirectory: config.keysDirectory, database: store.database)
                } catch let mismatch as ClusterKeySet.Mismatch {
                    throw CommandError(mismatch.description)
                }
                try await store.create(name, plugins: plugins)
                let keys = PortalKeys(database: store.database, box: box)
                return (anon: try await keys.issueAPIKey(portal: name, role: "anon"), service: try await keys.issueAPIKey(portal: name, role: "service_role"))
            }
            print("created portal \(name)" + (plugins.isEmpty ? "" : " with \(plugins.joined(separator: ", "))"))
            print(
                """

                API keys (shown once; keep service_role secret, it bypasses row-level security):
                  anon:         \(keys.anon)
                  service_role: \(keys.service)
                """)
        }
    }

    struct Psql: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open psql on a portal's database (the Database plugin's), as its owner or an API role.",
            discussion: """
                Needs a running kernel (or Postgres at database_url) and psql (Debian: postgresql-client). \
                --role owner (the default) may do anything in the portal's database, like the SQL console; \
                --role anon, authenticated or service_role connects as the API's authenticator and takes that role, so \
                row-level security applies as it does to the REST API. Arguments after -- go to psql, \
                e.g. `meltybase portal psql shop -- -c 'select count(*) from todos'`. \
                --print prints the libpq connection string instead of starting psql.
                """)
        @OptionGroup var options: ConfigOptions
        @Argument(help: "Portal name.") var name: String
        @Option(name: .long, help: "owner, anon, authenticated or service_role.") var role = "owner"
        @Flag(name: .customLong("print"), help: "Print the connection string and exit.") var printOnly = false
        @Argument(parsing: .postTerminator, help: "Arguments for psql.") var psqlArguments: [String] = []

        func validate() throws {
            guard ["owner", "anon", "authenticated", "service_role"].contains(role) else {
                throw ValidationError("--role must be owner, anon, authenticated or service_role (got \"\(role)\")")
            }
        }

        func run() async throws {
            let config = try options.load()
            guard try Kernel(config: config, logger: Logger(label: "meltybase")).runningSystemConninfo() != nil else {
                throw CommandError("the embedded Postgres of \(config.dataDirectory) is not running: start MeltyBase first (`scripts/run` or `meltybase serve`)")
            }
            // Where the portal's data lives is the Database plugin's business: ask it.
            let conninfo = try await PluginCommandDispatch.capture(config: config, plugin: "database", command: "conninfo", arguments: ["--portal", name, "--role", role])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if printOnly {
                print(conninfo)
                return
            }
            // An API role is taken at connection start (as the REST API's SET LOCAL ROLE does per request).
            if role != "owner" { setenv("PGOPTIONS", "-c role=\(role)", 1) }
            let arguments = ["psql", conninfo] + psqlArguments
            let argv = arguments.map { strdup($0) } + [nil]
            execvp("psql", argv)
            throw CommandError("cannot start psql: \(String(cString: strerror(errno))) (Debian: apt-get install postgresql-client)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List portals and their enabled plugins.")
        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let records = try await PortalCommand.withStore(options) { try await $0.list() }
            printTable([["PORTAL", "PLUGINS", "CREATED"]] + records.map { [$0.name, $0.plugins.isEmpty ? "-" : $0.plugins.joined(separator: ","), $0.createdAt] })
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a plugin for a portal.")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "Portal name.") var portal: String
        @Argument(help: "Plugin name.") var plugin: String

        func run() async throws {
            try await PortalCommand.setPlugin(options, portal: portal, plugin: plugin, enabled: true)
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a plugin for a portal.")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "Portal name.") var portal: String
        @Argument(help: "Plugin name.") var plugin: String

        func run() async throws {
            try await PortalCommand.setPlugin(options, portal: portal, plugin: plugin, enabled: false)
        }
    }
}
