import ArgumentParser

/// `meltybase setup`.
struct SetupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "setup", abstract: "Initialise this instance: verify a license and create the first admin.")
}
