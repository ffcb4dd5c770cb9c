import ArgumentParser
import Foundation

/// `meltybase functions ...`: Supabase's spelling of `meltybase edge ...`, the Edge plugin's
/// commands (ABI 1.5): deploy, list, versions, rollback, delete, logs.
struct FunctionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "functions",
        abstract: "Alias of `meltybase edge`: deploy and manage a portal's Deno functions.",
        discussion: """
            Forwards every argument to `meltybase edge` (the Edge plugin's commands; they need [plugins.edge] in
            plugins.toml). Example: meltybase functions deploy --portal shop hello ./functions/hello; see
            `meltybase edge --help`.
            """)

    @Argument(parsing: .captureForPassthrough, help: "Arguments for `meltybase edge`.")
    var arguments: [String] = []

    func run() async throws {
        let status = await PluginCommandDispatch(arguments: ["edge"] + arguments).runForwarded()
        if status != 0 { throw ExitCode(status) }
    }
}
