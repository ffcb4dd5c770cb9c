import ArgumentParser

/// `meltybase audit verify`.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Check the hash-chained audit log.")
}
