import ArgumentParser
import Foundation
import Kernel
import Logging

/// `meltybase plugins ...`
struct PluginsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins", abstract: "Inspect the plugins configured in plugins.toml.",
        subcommands: [List.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List plugins: name, version, ABI, status, health, path, and whether each portal enables them.",
            discussion: "Asks the running kernel (first listener) when one answers; otherwise loads the plugins in this process to check them.")

        @OptionGroup var options: ConfigOptions

        @Flag(name: .long, help: "Print JSON instead of a table.")
        var json = false

        @Option(name: .long, help: "Port of the running kernel to ask (default: the first listener in plugins.toml).")
        var port: Int?

        func run() async throws {
            let config = try options.load()
            let logger = Logger(label: "meltybase") { _ in SwiftLogNoOpLogHandler() }
            let listener = config.listeners[0]
            var inventory: PluginInventory? = nil
            if !listener.usesTLS {
                let host = listener.host == "0.0.0.0" ? "127.0.0.1" : listener.host
                inventory = await PluginInventory.fromRunningKernel(baseURL: "http://\(host):\(port ?? listener.port)")
            }
            if inventory == nil {
                let enabled =
                    (try? await Kernel(config: config, logger: logger).withSystemDatabase { database in
                        try await PortalStore(database: database, config: config).list()
                    })?.reduce(into: [String: [String]]()) { $0[$1.name] = $1.plugins } ?? [:]
                inventory = try await PluginInventory.loadedHere(config: config, enabled: enabled, logger: logger)
            }
            guard let inventory else { return }
            if json {
                let rows: [[String: Any]] = inventory.rows.map {
                    [
                        "name": $0.name, "version": $0.version, "abi": $0.abi, "status": $0.status, "path": $0.path, "prefix": $0.prefix,
                        "health": $0.health.map { ["status": $0.status, "message": $0.message] } ?? NSNull(),
                        "portals": Dictionary(uniqueKeysWithValues: $0.portals), "reason": $0.reason ?? NSNull(),
                    ]
                }
                let data = try JSONSerialization.data(withJSONObject: ["source": inventory.source, "plugins": rows], options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print("(\(inventory.source))")
            let table =
                [["NAME", "VERSION", "ABI", "STATUS", "HEALTH", "PREFIX", "PORTALS", "PATH"]]
                + inventory.rows.map { row in
                    [
                        row.name, row.version, row.abi, row.status, row.health.map { $0 == .notReported ? "-" : $0.status } ?? "-", row.prefix,
                        row.portals.isEmpty ? "-" : row.portals.map { "\($0.0):\($0.1)" }.joined(separator: ","), row.path,
                    ]
                }
            printTable(table)
            for row in inventory.rows where row.reason != nil {
                print("\(row.name): \(row.reason!)")
            }
        }
    }
}

/// Prints rows as left-aligned columns.
func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    let widths = first.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        print(
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
    }
}
