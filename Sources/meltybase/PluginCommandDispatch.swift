import ArgumentParser
import Foundation
import Kernel
import Logging

/// `meltybase <plugin> <command> [args]`: commands that plugins declare (ABI 1.5), dispatched
/// before ArgumentParser sees the arguments, since they are only known from plugins.toml.
///
/// `--config <path>` (or `--config=<path>`) may appear anywhere and is removed before the
/// plugin sees the arguments; default `./plugins.toml`.
struct PluginCommandDispatch {
    /// The arguments after the executable name.
    let arguments: [String]

    /// The `--config` value and the arguments without it.
    var split: (config: String, rest: [String]) {
        var config = "plugins.toml"
        var rest: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--config", index + 1 < arguments.count {
                config = arguments[index + 1]
                index += 2
                continue
            }
            if argument.hasPrefix("--config=") {
                config = String(argument.dropFirst("--config=".count))
            } else {
                rest.append(argument)
            }
            index += 1
        }
        return (config, rest)
    }

    /// Exit status when the arguments name a configured plugin (the command ran or its
    /// help was printed); nil when they are for a built-in command (ArgumentParser's job).
    func runIfPluginCommand(builtIns: Set<String>) async -> Int32? {
        let (configPath, rest) = split
        guard let first = rest.first, !first.hasPrefix("-"), !builtIns.contains(first) else { return nil }
        guard let config = try? ConfigLoader().load(path: configPath) else { return nil }
        var logger = Logger(label: "meltybase")
        logger.logLevel = .warning
        let runner = PluginCommandRunner(config: config, logger: logger)
        guard runner.isConfigured(first) else {
            let plugins = config.plugins.map(\.name)
            printError("unknown command or plugin \"\(first)\": built-in commands are \(builtIns.sorted().joined(separator: ", ")); plugins in \(config.sourcePath) are \(plugins.isEmpty ? "none" : plugins.joined(separator: ", ")) (meltybase --help)")
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
            printError("plugin \"\(first)\" has no command \"\(command)\"; its commands: \(description.commands.isEmpty ? "none" : description.commands.map(\.name).joined(separator: ", ")) (meltybase \(first) --help)")
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

    /// `meltybase <plugin> --help`: the plugin's commands with their summaries.
    static func usage(of description: PluginCommandRunner.Description) -> String {
        guard !description.commands.isEmpty else {
            return "Plugin \(description.plugin) \(description.version) declares no commands."
        }
        let width = description.commands.map(\.name.count).max() ?? 0
        let lines = description.commands.map { "  \($0.name.padding(toLength: width, withPad: " ", startingAt: 0))  \($0.summary)" }
        return (["USAGE: meltybase \(description.plugin) <command> [arguments] [--config <path>]", "",
                 "COMMANDS (plugin \(description.plugin) \(description.version)):"] + lines
                + ["", "See 'meltybase \(description.plugin) <command> --help' for a command's usage."]).joined(separator: "\n")
    }

    /// The "PLUGIN COMMANDS" section of `meltybase --help`: every configured plugin's
    /// commands, or nothing when the config does not load.
    func helpSection() -> String? {
        let (configPath, _) = split
        guard let config = try? ConfigLoader().load(path: configPath), !config.plugins.isEmpty else { return nil }
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

    private func printError(_ message: String) {
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
    }
}
