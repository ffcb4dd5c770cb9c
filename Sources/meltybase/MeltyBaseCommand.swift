import ArgumentParser

/// `meltybase`: the kernel binary and its command line.
@main
struct MeltyBase: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meltybase",
        abstract: "MeltyBase: one binary in front of Postgres, Redis and Deno, with capabilities as plugins.",
        discussion: """
            Start with `meltybase serve` (embedded Postgres and Redis when plugins.toml gives no URLs),
            then open http://localhost:3000/v1/system/status. `meltybase doctor` checks this machine.
            """,
        subcommands: [ServeCommand.self, PluginsCommand.self, PortalCommand.self, DoctorCommand.self]
    )
}
