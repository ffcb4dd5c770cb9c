import ArgumentParser
struct PluginsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plugins", abstract: "Inspect plugins.")
}
struct PortalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "portal", abstract: "Manage portals.")
}
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "doctor", abstract: "Check this machine.")
}
