import ArgumentParser
import Foundation
import Kernel
import Logging
import Synchronization

/// `meltybase <plugin> <command> [args]`: commands that plugins declare (ABI 1.5), dispatched
/// before ArgumentParser sees the arguments, since they are only known from plugins.toml.
///
/// `--config <path>` (default `./plugins.toml`) and `--data-dir <path>` (or `--x=<path>`)
/// may appear anywhere and are taken by meltybase, as for the built-in commands; the plugin
/// never sees them.
struct PluginCommandDispatch {
    /// The arguments after the executable name.
    let arguments: [String]

    /// The `--config` and `--data-dir` values and the arguments without them.
    var split: (config: String, dataDirectory: String?, rest: [String]) {
        var config = "plugins.toml"
        var dataDirectory: String? = nil
        var rest: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--config" || argument == "--data-dir", index + 1 < arguments.count {
                if argument == "--config" { config = arguments[index + 1] } else { dataDirectory = arguments[index + 1] }
                index += 2
                continue
            }
            if argument.hasPrefix("--config=") {
                config = String(argument.dropFirst("--config=".count))
            } else if argument.hasPrefix("--data-dir=") {
                dataDirectory = String(argument.dropFirst("--data-dir=".count))
            } else {
                rest.append(argument)
            }
            index += 1
        }
        return (config, dataDirectory, rest)
    }

    /// The config of `--config`, with `--data-dir` applied: ``ConfigOptions/load()``, as
    /// for the built-in commands.
    func loadConfig() throws -> KernelConfig {
        let (path, dataDirectory, _) = split
        var options = ConfigOptions()
        options.config = path
        options.dataDir = dataDirectory
        return try options.load()
    }

    /// Exit status when the arguments name a configured plugin (the command ran or its
    /// help was printed); nil when they are for a built-in command (ArgumentParser's job).
    func runIfPluginCommand(builtIns: Set<String>) async -> Int32? {
        let rest = split.rest
        guard let first = rest.first, !first.hasPrefix("-"), !builtIns.contains(first) else { return nil }
        guard let config = try? loadConfig() else { return nil }
        var logger = Logger(label: "meltybase")
        logger.logLevel = .warning
        let runner = PluginCommandRunner(config: config, logger: logger)
        guard runner.isConfigured(first) else {
            let plugins = config.plugins.map(\.name)
            printError(
                "unknown command or plugin \"\(first)\": built-in commands are \(builtIns.sorted().joined(separator: ", ")); plugins in \(config.sourcePath) are \(plugins.isEmpty ? "none" : plugins.joined(separator: ", ")) (meltybase --help)"
            )
            return 2
        }
        let description: PluginCommandRunner.Description
        do {
            description = try runner.describe(plugin: first)
        } catch {
            printError(error.description)
            return error.exitStatus
        }
        let afterPlugin = Array(rest.dropFirst())
        guard let command = afterPlugin.first, !["--help", "-h", "help"].contains(command) else {
            print(Self.usage(of: description))
            return 0
        }
        guard let declared = description.commands.first(where: { $0.name == command }) else {
            printError(
                "plugin \"\(first)\" has no command \"\(command)\"; its commands: \(description.commands.isEmpty ? "none" : description.commands.map(\.name).joined(separator: ", ")) (meltybase \(first) --help)"
            )
            return 2
        }
        let commandArguments = Array(afterPlugin.dropFirst())
        if commandArguments.contains("--help") || commandArguments == ["-h"] {
            print(declared.help)
            return 0
        }
        do {
            return try await runner.run(plugin: first, command: command, arguments: commandArguments) { stream, bytes in
                (stream == .output ? FileHandle.standardOutput : FileHandle.standardError).write(Data(bytes))
            }
        } catch {
            printError(error.description)
            return error.exitStatus
        }
    }

    /// Runs the arguments as a plugin command for a built-in alias (`meltybase migrate`):
    /// like ``runIfPluginCommand(builtIns:)``, but a config that does not load is an error.
    func runForwarded() async -> Int32 {
        do {
            _ = try loadConfig()
        } catch {
            printError("\(error)")
            return 1
        }
        return await runIfPluginCommand(builtIns: []) ?? 2
    }

    /// Runs `command` of `plugin` and returns its standard output, for built-in commands
    /// that ask a plugin (`meltybase portal psql` asks `database conninfo`). Standard error
    /// passes through; a non-zero exit status becomes a ``CommandError``.
    static func capture(config: KernelConfig, plugin: String, command: String, arguments: [String]) async throws -> String {
        var logger = Logger(label: "meltybase")
        logger.logLevel = .warning
        let output = CapturedOutput()
        let status: Int32
        do {
            status = try await PluginCommandRunner(config: config, logger: logger).run(plugin: plugin, command: command, arguments: arguments) { stream, bytes in
                if stream == .output { output.append(bytes) } else { FileHandle.standardError.write(Data(bytes)) }
            }
        } catch {
            throw CommandError(error.description)
        }
        guard status == 0 else { throw CommandError("meltybase \(plugin) \(command) exited with status \(status)") }
        return output.text
    }

    /// `meltybase <plugin> --help`: the plugin's commands with their summaries.
    static func usage(of description: PluginCommandRunner.Description) -> String {
        guard !description.commands.isEmpty else {
            return "Plugin \(description.plugin) \(description.version) declares no commands."
        }
        let width = description.commands.map(\.name.count).max() ?? 0
        let lines = description.commands.map { "  \($0.name.padding(toLength: width, withPad: " ", startingAt: 0))  \($0.summary)" }
        return
            ([
                "USAGE: meltybase \(description.plugin) <command> [arguments] [--config <path>]", "",
                "COMMANDS (plugin \(description.plugin) \(description.version)):",
            ] + lines
            + ["", "See 'meltybase \(description.plugin) <command> --help' for a command's usage."]).joined(separator: "\n")
    }

    /// The "PLUGIN COMMANDS" section of `meltybase --help`: every configured plugin's
    /// commands, or nothing when the config does not load.
    func helpSection() -> String? {
        guard let config = try? loadConfig(), !config.plugins.isEmpty else { return nil }
        let runner = PluginCommandRunner(config: config, logger: Logger(label: "meltybase") { _ in SwiftLogNoOpLogHandler() })
        var lines = ["PLUGIN COMMANDS (from \(config.sourcePath)):"]
        for plugin in config.plugins {
            do {
                let description = try runner.describe(plugin: plugin.name)
                for command in description.commands {
                    lines.append("  \("\(plugin.name) \(command.name)".padding(toLength: 28, withPad: " ", startingAt: 0)) \(command.summary)")
                }
            } catch {
                lines.append("  \(plugin.name.padding(toLength: 28, withPad: " ", startingAt: 0)) (not loadable: run meltybase plugins list)")
            }
        }
        return lines.count > 1 ? lines.joined(separator: "\n") : nil
    }

    func printError(_ message: String) {
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
    }
}

/// Bytes a plugin command wrote to standard output, collected across threads.
final class CapturedOutput: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ more: [UInt8]) { bytes.withLock { $0.append(contentsOf: more) } }
    var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
}
