import ArgumentParser
import Foundation
import Kernel
import Logging

/// `meltybase setup`: the setup handshake from the command line.
struct SetupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup",
        abstract: "Initialise this instance: verify a license and create the root admin (once, for good).",
        discussion: """
            The password is read from standard input when it is not a terminal, otherwise from a
            prompt without echo; it is never taken from the command line (argv is visible to
            every user of the machine).

              printf '%s\\n' "$ADMIN_PASSWORD" | meltybase setup --license "$(cat license.txt)" --admin-email ops@example.com

            Without a vendor key ([license] public_key unset), --evaluation uses this machine's own
            evaluation license (indie, 3 seats, 90 days), as the Studio's wizard offers:

              meltybase setup --evaluation --admin-email ops@example.com
            """)

    @OptionGroup var options: ConfigOptions

    @Option(name: .long, help: "The license string (MB1...), or - to read it from the first line of stdin.")
    var license: String?

    @Flag(name: .long, help: "Use this machine's evaluation license (only while no vendor public key is configured).")
    var evaluation = false

    @Option(name: .customLong("admin-email"), help: "Email of the root admin account to create.")
    var adminEmail: String

    func validate() throws {
        guard (license != nil) != evaluation else {
            throw ValidationError("give either --license MB1... (or --license - for stdin) or --evaluation")
        }
    }

    func run() async throws {
        var config = try options.load()
        var licenseKey = license ?? ""
        if license == "-" { licenseKey = readLine(strippingNewline: true) ?? "" }
        var logger = Logger(label: "meltybase") { label in
            var handler = StreamLogHandler.standardOutput(label: label)
            handler.logLevel = .notice
            return handler
        }
        logger.logLevel = .notice
        let password = try Self.readPassword()
        do {
            _ = try await Kernel(config: config, logger: logger).withSystemDatabase { database in
                try await database.migrate()
                let initialized = try await database.withConnection {
                    try await $0.query("SELECT is_initialized FROM meltybase.system_state").value("is_initialized") == "t"
                }
                // As `serve` does: without a vendor key, licenses verify with this machine's evaluation key.
                if let evaluationKey = try EvaluationLicense.prepare(config: config, initialized: initialized, logger: logger) {
                    config.licensePublicKey = evaluationKey.publicKeyHex
                    if evaluation { licenseKey = try evaluationKey.issue().key }
                } else if evaluation {
                    throw CommandError("--evaluation works only while no vendor public key is configured ([license] public_key); use the vendor's --license")
                }
                let service = SetupService(database: database, state: SystemState(isInitialized: initialized), config: config, logger: logger)
                return try await service.perform(licenseKey: licenseKey, email: adminEmail, password: password)
            }
        } catch let refusal as SetupService.Refusal {
            throw CommandError(refusal.description)
        }
    }

    /// The password from stdin (not a terminal) or a no-echo prompt.
    static func readPassword() throws -> String {
        if isatty(STDIN_FILENO) == 0 {
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                throw CommandError("no password on standard input; pipe it in or run in a terminal to be prompted")
            }
            return line
        }
        FileHandle.standardError.write(Data("Admin password (at least 12 characters): ".utf8))
        var original = termios()
        tcgetattr(STDIN_FILENO, &original)
        var silent = original
        silent.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSANOW, &silent)
        defer {
            tcsetattr(STDIN_FILENO, TCSANOW, &original)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        guard let line = readLine(strippingNewline: true), !line.isEmpty else { throw CommandError("no password given") }
        return line
    }
}
