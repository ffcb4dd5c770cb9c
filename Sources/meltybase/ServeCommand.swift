import ArgumentParser
import Foundation
import Kernel
import Logging

/// Options shared by every command that reads `plugins.toml`.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Path of plugins.toml (default: ./plugins.toml).")
    var config: String = "plugins.toml"

    @Option(name: .long, help: "Data directory for the embedded Postgres and Redis (default: [kernel] data_dir, else .meltybase next to the config).")
    var dataDir: String?

    /// Loads and validates the config, applying `--data-dir`; exits with the located error.
    func load() throws -> KernelConfig {
        do {
            var config = try ConfigLoader().load(path: config)
            if let dataDir {
                config.dataDirectory = URL(fileURLWithPath: dataDir).standardizedFileURL.path
            }
            return config
        } catch let error as ConfigError {
            throw CommandError("\(error)")
        }
    }
}

/// Builds the kernel's logger at the configured level.
func makeLogger(level: String) -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardOutput(label: label)
        handler.logLevel = Logger.Level(rawValue: level) ?? .info
        return handler
    }
    return Logger(label: "meltybase")
}

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the kernel: gateway, plugins and portals (and the embedded Postgres and Redis unless URLs are configured).")

    @OptionGroup var options: ConfigOptions

    @Option(name: .long, help: "Port of the first listener (overrides plugins.toml; 0 picks a free port).")
    var port: Int?

    func run() async throws {
        var config = try options.load()
        if let port {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
            config.listeners[0].port = port
        }
        let logger = makeLogger(level: config.logLevel)
        let kernel = Kernel(config: config, logger: logger)
        do {
            try await kernel.run()
        } catch {
            logger.critical("MeltyBase could not start: \(error)")
            throw ExitCode(1)
        }
    }
}

/// A failure printed as `Error: <message>` without the usage text.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
