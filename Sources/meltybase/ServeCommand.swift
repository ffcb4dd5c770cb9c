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
            AutomaticTLS.resolvePaths(in: &config)
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
        abstract: "Run MeltyBase: a supervisor that keeps the kernel (gateway, plugins, portals) running.",
        discussion: """
            `meltybase serve` is a small supervisor. It takes the data directory's lock, starts the \
            embedded Postgres and Redis (unless plugins.toml or MELTYBASE_DATABASE_URL / \
            MELTYBASE_REDIS_URL give URLs), binds the listeners, and runs the kernel as a worker \
            process: the same binary, handed the listening sockets and the services' addresses.

            Plugins run inside the worker, so a crash in any of them ends the worker, not the \
            platform: the supervisor restarts it at once (after 0.5, 1, 2, then 5 s when it keeps \
            dying within 30 s of its start) and logs how it died and, for a crash, the innermost \
            plugin in the crash's stack. Postgres and Redis keep running meanwhile, and \
            connections wait in the listening sockets' backlog.

            SIGTERM or SIGINT stops the worker (in-flight requests get max(10, request_timeout + 5) \
            seconds; a second signal kills it), then Redis and Postgres. If the supervisor is killed, \
            the worker exits and a watchdog stops Postgres and Redis. Run it under systemd with \
            deploy/meltybase.service; see docs/operations.md.
            """)

    @OptionGroup var options: ConfigOptions

    @Option(name: .long, help: "Port of the first listener (overrides plugins.toml; 0 picks a free port).")
    var port: Int?

    @Flag(
        name: .long,
        help: "When the embedded default needs Postgres or Redis and they are missing, install them with apt-get (Debian, as root).")
    var installDeps = false

    /// Set by the supervisor on the worker it starts (descriptors 3, 4, ... are inherited).
    @Flag(name: .long, help: .hidden)
    var worker = false

    func run() async throws {
        var config = try options.load()
        if let port {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
            config.listeners[0].port = port
        }
        let logger = makeLogger(level: config.logLevel)
        if worker {
            try await runWorker(config: config, logger: logger)
            return
        }
        try checkDependencies(config: config)
        try AutomaticTLS.createIfMissing(config: config, logger: logger)
        var supervisorLogger = Logger(label: "meltybase.supervisor")
        supervisorLogger.logLevel = logger.logLevel
        let supervisor = KernelSupervisor(
            config: config, workerExecutable: Self.executablePath, workerArguments: workerArguments, logger: supervisorLogger)
        do {
            try await supervisor.run()
        } catch {
            supervisorLogger.critical("MeltyBase could not start: \(error)")
            throw ExitCode(1)
        }
    }

    /// Installs (with `--install-deps`) or names the Debian packages the embedded services
    /// need; a missing Postgres stops here, a missing Redis only warns (the kernel runs without it).
    private func checkDependencies(config: KernelConfig) throws {
        let missing = DependencyInstaller.missing(config: config)
        guard !missing.isEmpty else { return }
        if installDeps {
            do {
                try DependencyInstaller.install(missing)
            } catch {
                throw CommandError(error.description)
            }
            return
        }
        if missing.contains(where: \.required) { throw CommandError(DependencyInstaller.explanation(missing)) }
        FileHandle.standardError.write(Data("warning: \(DependencyInstaller.explanation(missing))\n".utf8))
    }

    /// The kernel in worker mode: the supervisor owns the embedded services, the lock and the sockets.
    private func runWorker(config: KernelConfig, logger: Logger) async throws {
        let kernel = Kernel(config: config, logger: logger)
        kernel.ownsEmbeddedServices = false
        kernel.inheritedListeners = WorkerHandoff.listenerDescriptors(count: config.listeners.count)
        do {
            try WorkerHandoff.watchLifeline()
            try await kernel.run()
        } catch {
            logger.critical("MeltyBase could not start: \(error)")
            // Failing before listening tells the supervisor not to retry for ever.
            throw ExitCode(kernel.listeningPorts.isEmpty ? WorkerHandoff.startFailureExitCode : 1)
        }
    }

    /// The command line of a worker: this command's own options plus `--worker`.
    private var workerArguments: [String] {
        var arguments = ["serve", "--worker", "--config", options.config]
        if let dataDir = options.dataDir { arguments += ["--data-dir", dataDir] }
        if let port { arguments += ["--port", "\(port)"] }
        return arguments
    }

    /// This binary's path (workers run the binary the supervisor was started from).
    private static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// A failure printed as `Error: <message>` without the usage text.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
