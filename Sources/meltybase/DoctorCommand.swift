import ArgumentParser
import Foundation
import Kernel
import Logging

/// `meltybase doctor`: finds what MeltyBase needs on this machine and says how to fix gaps.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this machine: Postgres, Redis, Deno, the C libraries and plugins.toml; say how to fix what is missing.")

    @Option(name: .long, help: "Path of plugins.toml to validate (default: ./plugins.toml).")
    var config: String = "plugins.toml"

    func run() async throws {
        let checks = MachineCheck.all(configPath: config)
        var failed = 0
        for check in checks {
            let mark = check.ok ? "ok  " : (check.required ? "FAIL" : "warn")
            print("[\(mark)] \(check.name): \(check.detail)")
            if !check.ok, let fix = check.fix { print("       fix: \(fix)") }
            if !check.ok && check.required { failed += 1 }
        }
        await printPluginHealth()
        print(failed == 0 ? "MeltyBase can run here." : "\(failed) required check(s) failed.")
        if failed > 0 { throw ExitCode(1) }
    }

    /// Loads each configured plugin in this process (as `meltybase plugins list` does without a
    /// kernel) and prints its health (ABI 1.5); plugins without the callback say "not reported".
    private func printPluginHealth() async {
        guard let config = try? ConfigLoader().load(path: config), !config.plugins.isEmpty else { return }
        let logger = Logger(label: "meltybase") { _ in SwiftLogNoOpLogHandler() }
        guard let inventory = try? await PluginInventory.loadedHere(config: config, enabled: [:], logger: logger) else { return }
        for row in inventory.rows {
            if let reason = row.reason {
                print("[warn] plugin \(row.name): not loaded: \(reason)")
                continue
            }
            let health = row.health ?? .notReported
            let mark = health.status == "ok" ? "ok  " : (health.status == "not reported" ? "info" : "warn")
            print("[\(mark)] plugin \(row.name) health: \(health.status)\(health.message.isEmpty ? "" : ": \(health.message)")")
        }
    }
}
