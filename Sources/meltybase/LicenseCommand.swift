import ArgumentParser

/// `meltybase license keygen|issue|verify` (vendor tooling).
struct LicenseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "license", abstract: "Create and check Ed25519 license keys.")
}
