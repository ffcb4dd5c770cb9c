import ArgumentParser
import Foundation

/// `meltybase migrate ...`: an alias that forwards to `meltybase database migrate ...`, the
/// Database plugin's command (ABI 1.5). Kept so scripts written before the move still work.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Alias of `meltybase database migrate`: apply a folder of SQL migrations to a portal's database.",
        discussion: """
            Forwards every argument to `meltybase database migrate` (the Database plugin's command; it needs
            [plugins.database] in plugins.toml). Usage: meltybase migrate --portal <portal> <directory>
            [--dry-run | --status] [--config <path>]; see `meltybase database migrate --help`.
            """)

    @Argument(parsing: .captureForPassthrough, help: "Arguments for `meltybase database migrate`.")
    var arguments: [String] = []

    func run() async throws {
        let status = await PluginCommandDispatch(arguments: ["database", "migrate"] + arguments).runForwarded()
        if status != 0 { throw ExitCode(status) }
    }
}
