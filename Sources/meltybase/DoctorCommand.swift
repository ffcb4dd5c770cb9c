import ArgumentParser
import Foundation
import Kernel

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
        print(failed == 0 ? "MeltyBase can run here." : "\(failed) required check(s) failed.")
        if failed > 0 { throw ExitCode(1) }
    }
}
