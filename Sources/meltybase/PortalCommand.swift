import ArgumentParser
import Foundation
import Kernel
import Logging

/// `meltybase portal create|list|enable|disable`
struct PortalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portal", abstract: "Manage portals (tenants) and the plugins each enables.",
        discussion: "Changes are written to the system database; running kernels apply them at once.",
        subcommands: [Create.self, List.self, Enable.self, Disable.self])

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
        @Option(name: .long, parsing: .upToNextOption, help: "Plugins to enable (names from plugins.toml).") var plugins: [String] = []

        func run() async throws {
            let config = try options.load()
            let keys = try await PortalCommand.withStore(options) { store in
                try await store.create(name, plugins: plugins)
                let keys = try PortalKeys(database: store.database, dataDirectory: config.dataDirectory)
                return (anon: try await keys.issueAPIKey(portal: name, role: "anon"), service: try await keys.issueAPIKey(portal: name, role: "service_role"))
            }
            print("created portal \(name)" + (plugins.isEmpty ? "" : " with \(plugins.joined(separator: ", "))"))
            print("""

                API keys (shown once; keep service_role secret, it bypasses row-level security):
                  anon:         \(keys.anon)
                  service_role: \(keys.service)
                """)
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
