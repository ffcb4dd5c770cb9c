import ArgumentParser
import Foundation

/// `meltybase`: the kernel binary and its command line.
@main
struct MeltyBase: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meltybase",
        abstract: "MeltyBase: one binary in front of Postgres, Redis and Deno, with capabilities as plugins.",
        discussion: """
            Start with `meltybase serve` (embedded Postgres and Redis when plugins.toml gives no URLs),
            then open http://localhost:3000/v1/system/status. `meltybase doctor` checks this machine.
            Plugins add commands: `meltybase <plugin> <command> [args]` (`meltybase <plugin> --help` lists them).
            """,
        subcommands: [
            ServeCommand.self, PluginsCommand.self, PortalCommand.self, MigrateCommand.self, FunctionsCommand.self, SetupCommand.self, LicenseCommand.self, AuditCommand.self,
            CertsCommand.self, KeysCommand.self, BackupCommand.self,
            DoctorCommand.self,
            VerifyReleaseCommand.self, VerifyReleaseCommand.Release.self,
        ]
    )

    /// Runs the chosen command; a ``CommandError`` prints `Error: <message>` without usage.
    static func main() async {
        let dispatch = PluginCommandDispatch(arguments: Array(CommandLine.arguments.dropFirst()))
        let builtIns = Set(configuration.subcommands.map { $0._commandName } + ["help"])
        if let status = await dispatch.runIfPluginCommand(builtIns: builtIns) {
            Foundation.exit(status)
        }
        let rest = dispatch.split.rest
        if rest.isEmpty || rest == ["--help"] || rest == ["-h"] || rest == ["help"] {
            print(helpMessage())
            if let section = dispatch.helpSection() { print("\n" + section) }
            Foundation.exit(0)
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CommandError {
            FileHandle.standardError.write(Data("Error: \(error.description)\n".utf8))
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}
