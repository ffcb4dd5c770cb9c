import Foundation
import Logging
import MeltyABIBytes
import MeltyEmbedded
import MeltyPluginABI

/// Runs a plugin's command in this process: `meltybase <plugin> <command> [args]` (ABI 1.5
/// `cli_commands` and `cli_run`).
///
/// The plugin is loaded exactly as a kernel loads it (``PluginLoader``: same descriptor
/// checks, `init` on a blocking pool), with a host whose functions work without a server:
/// log lines go to the command's logger, `audit` appends to the system database's audit log
/// (committed per call), `postgres_conninfo` names the system database. The system
/// database is the running kernel's, or the embedded Postgres started for the command and
/// stopped after it (``Kernel/withSystemDatabase(_:)``). Then `cli_run`, then `shutdown`.
public struct PluginCommandRunner: Sendable {
    /// The loaded config (`plugins.toml`).
    public let config: KernelConfig
    /// Where the plugin's log lines go.
    public let logger: Logger

    /// A runner for the plugins of `config`.
    public init(config: KernelConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// Which stream a plugin writes to.
    public enum Stream: Sendable {
        case output, error
    }

    /// What a plugin declares for the command line, read without running its `init`.
    public struct Description: Sendable {
        /// Plugin name.
        public let plugin: String
        /// Plugin version.
        public let version: String
        /// Its commands, in descriptor order.
        public let commands: [PluginCommand]
    }

    /// Why a command could not run; `exitStatus` is 2 for usage errors, 1 otherwise.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        /// The message for the user.
        public let description: String
        /// The process exit status to use.
        public let exitStatus: Int32
    }

    /// Whether `name` is a plugin configured in the config.
    public func isConfigured(_ name: String) -> Bool { config.plugins.contains { $0.name == name } }

    /// Opens and checks `name`'s library, without calling `init`.
    public func describe(plugin name: String) throws(Failure) -> Description {
        guard let pluginConfig = config.plugins.first(where: { $0.name == name }) else {
            let names = config.plugins.map(\.name)
            throw Failure(
                description: "no plugin \"\(name)\" in \(config.sourcePath); configured plugins: \(names.isEmpty ? "none" : names.joined(separator: ", "))", exitStatus: 2)
        }
        do {
            let inspected = try PluginLoader.inspect(pluginConfig)
            return Description(plugin: name, version: String(cString: inspected.descriptor.pointee.version), commands: inspected.extensions.commands)
        } catch let error as PluginLoadError {
            throw Failure(description: error.description, exitStatus: 1)
        } catch {
            throw Failure(description: "plugin \"\(name)\": \(error)", exitStatus: 1)
        }
    }

    /// `redis_url` for a command: the configured Redis, else the embedded one while a kernel
    /// runs it (its socket exists); nil otherwise (a command never starts Redis).
    func runningRedisURL() -> String? {
        if let url = config.redisURL { return url }
        let embedded = EmbeddedRedis(dataDirectory: config.dataDirectory, logger: logger)
        return FileManager.default.fileExists(atPath: embedded.socketPath) ? embedded.url : nil
    }

    /// Runs `command` of plugin `name` with `arguments`; returns the plugin's exit status.
    /// `write` receives what the plugin writes, in order, from the thread running it.
    public func run(
        plugin name: String, command: String, arguments: [String],
        write: @escaping @Sendable (Stream, [UInt8]) -> Void
    ) async throws(Failure) -> Int32 {
        let description = try describe(plugin: name)
        guard description.commands.contains(where: { $0.name == command }) else {
            let known = description.commands.map(\.name)
            throw Failure(
                description: "plugin \"\(name)\" has no command \"\(command)\"; its commands: \(known.isEmpty ? "none" : known.joined(separator: ", ")) (meltybase \(name) --help)",
                exitStatus: 2)
        }
        guard var pluginConfig = config.plugins.first(where: { $0.name == name }) else {
            throw Failure(description: "no plugin \"\(name)\" configured", exitStatus: 2)
        }
        pluginConfig.required = true
        let logger = self.logger
        do {
            return try await Kernel(config: config, logger: logger).withSystemDatabase { database in
                let context = HostContext(
                    logger: logger, audit: AuditLogSink(database: database), conninfo: database.conninfo, redisURL: runningRedisURL())
                let host: PluginHost
                do {
                    host = try await PluginHost(configs: [pluginConfig], context: context)
                } catch {
                    await context.close()
                    throw error
                }
                let status: Int32
                if let plugin = host.plugin(named: name) {
                    let invocation = CommandInvocation(
                        plugin: plugin, table: context.table, configJSON: pluginConfig.configJSON,
                        command: command, arguments: arguments, write: write)
                    status = (try? await context.runBlocking { invocation.run() }) ?? 1
                } else {
                    status = 1
                }
                await host.shutdown()
                await context.close()
                return status
            }
        } catch let error as PluginLoadError {
            throw Failure(description: error.description, exitStatus: 1)
        } catch {
            throw Failure(description: "cannot run \(name) \(command): \(error)", exitStatus: 1)
        }
    }
}

/// One `cli_run` call: builds the host-owned `mb_host_cli_context` and `argv`, calls the
/// plugin on the current (blocking pool) thread, and frees them after.
struct CommandInvocation: @unchecked Sendable {  // Sendable: the plugin and table are immortal (SharedPointer rules); the rest is values.
    let plugin: LoadedPlugin
    let table: SharedPointer<UnsafePointer<mb_host_api>>
    let configJSON: String
    let command: String
    let arguments: [String]
    let write: @Sendable (PluginCommandRunner.Stream, [UInt8]) -> Void

    /// Holds the writer for the C callbacks; its address follows the C struct in memory.
    final class Writer {
        let write: @Sendable (PluginCommandRunner.Stream, [UInt8]) -> Void
        init(_ write: @escaping @Sendable (PluginCommandRunner.Stream, [UInt8]) -> Void) { self.write = write }
    }

    /// The context is followed by the writer's address, so the C callbacks find it.
    private static let writerOffset =
        (MemoryLayout<mb_host_cli_context>.size + MemoryLayout<UnsafeRawPointer>.alignment - 1)
        / MemoryLayout<UnsafeRawPointer>.alignment * MemoryLayout<UnsafeRawPointer>.alignment

    func run() -> Int32 {
        guard let cliRun = plugin.descriptor.pointee.cli_run else { return 1 }
        let writer = Writer(write)
        let memory = UnsafeMutableRawPointer.allocate(
            byteCount: Self.writerOffset + MemoryLayout<UnsafeRawPointer>.size,
            alignment: max(MemoryLayout<mb_host_cli_context>.alignment, MemoryLayout<UnsafeRawPointer>.alignment))
        defer { memory.deallocate() }
        let cArguments = arguments.map { strdup($0) }
        defer { cArguments.forEach { free($0) } }
        let argv = cArguments.map { UnsafePointer($0) } + [nil]
        let status = withExtendedLifetime(writer) { () -> Int32 in
            (memory + Self.writerOffset).storeBytes(of: Unmanaged.passUnretained(writer).toOpaque(), as: UnsafeMutableRawPointer.self)
            return configJSON.withHostBytes { config -> Int32 in
                let context = memory.bindMemory(to: mb_host_cli_context.self, capacity: 1)
                context.initialize(
                    to: mb_host_cli_context(
                        struct_size: MemoryLayout<mb_host_cli_context>.size, host: table.pointer, plugin: plugin.handle.opaque,
                        config_json: config, write_out: { context, bytes in CommandInvocation.deliver(context, .output, bytes) },
                        write_err: { context, bytes in CommandInvocation.deliver(context, .error, bytes) }))
                defer { context.deinitialize(count: 1) }
                return argv.withUnsafeBufferPointer { list in
                    cliRun(context, command, Int32(arguments.count), list.baseAddress)
                }
            }
        }
        return status
    }

    private static func deliver(_ context: UnsafePointer<mb_host_cli_context>?, _ stream: PluginCommandRunner.Stream, _ bytes: mb_plugin_bytes) {
        guard let context, bytes.len > 0 else { return }
        let address = UnsafeRawPointer(context) + writerOffset
        let writer = Unmanaged<Writer>.fromOpaque(address.load(as: UnsafeMutableRawPointer.self)).takeUnretainedValue()
        writer.write(stream, copyBytes(bytes))
    }
}
