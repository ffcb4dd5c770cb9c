import Foundation

/// Type-checks a function with `deno check` before it is stored, offline: remote, `npm:`
/// and `jsr:` imports fail instead of downloading, no `deno.json`, `package.json` or lock
/// file of the bundle is read, and Deno sees only the environment given here.
///
/// The command is `deno check --no-remote --no-npm --no-config --no-lock --quiet <entry>`
/// with the environment `DENO_DIR`, `NO_COLOR=1`, `DENO_NO_UPDATE_CHECK=1`,
/// `DENO_NO_PROMPT=1` and nothing else; its stderr is parsed by ``DenoDiagnostics``.
///
/// Cost, measured here (2 cores shared with other builds, load ~2–3; Deno 2.9.8,
/// TypeScript 6.0.3), for a small module with one local import and a `node:` import:
/// 0.86–1.08 s from the command line with a fresh `DENO_DIR`, 0.7–1.0 s warm, 2–3 s for the
/// first check while the test suite runs in parallel. TypeScript's checker starting
/// dominates. A syntax error or a remote import is refused in 12–30 ms (Deno stops before
/// type checking). Checks run as child processes, so several may run at once; the plugin bounds how many.
public struct DeployChecker: Sendable {
    /// How long a check may take before it is killed.
    public static let defaultTimeout: Duration = .seconds(60)
    /// The arguments before the entrypoint's path.
    public static let arguments = ["check", "--no-remote", "--no-npm", "--no-config", "--no-lock", "--quiet"]

    /// The `deno` executable (an absolute path).
    public let deno: String
    /// Deno's cache folder (`DENO_DIR`), shared by checks; created when missing.
    public let cacheDirectory: String
    /// The most time one check may take.
    public let timeout: Duration

    /// A checker running `deno` with `cacheDirectory` as `DENO_DIR`.
    public init(deno: String, cacheDirectory: String, timeout: Duration = Self.defaultTimeout) {
        self.deno = deno
        self.cacheDirectory = cacheDirectory
        self.timeout = timeout
    }

    /// Checks the module `entrypoint` (relative) of the function materialised in
    /// `directory`; returns when it passes, otherwise throws every problem Deno reported
    /// (at most ``EdgeDeployRejection/limit``), files relative to `directory`.
    public func check(directory: String, entrypoint: String) async throws(EdgeDeployRejection) {
        let entry: String
        do {
            entry = try BundlePath.normalize(entrypoint)
        } catch {
            throw EdgeDeployRejection([EdgeDeployError(.invalidBundle, "entrypoint: \(error.message)")])
        }
        let folder = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        guard let root = realPath(folder) else {
            throw EdgeDeployRejection([EdgeDeployError(.invalidBundle, "the function's folder cannot be opened: \(String(cString: strerror(errno)))")])
        }
        guard FileManager.default.fileExists(atPath: root + "/" + entry) else {
            throw EdgeDeployRejection([EdgeDeployError(.invalidBundle, "the entrypoint \(FunctionName.quoted(entry)) is not among the bundle's files")])
        }
        let unavailableHint = "check the Edge plugin's deno path and that Deno runs on this machine"
        guard access(deno, X_OK) == 0 else {
            throw EdgeDeployRejection([EdgeDeployError(.denoUnavailable, "Deno cannot be run from \(deno): \(String(cString: strerror(errno)))", hint: unavailableHint)])
        }
        try? FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        let environment = ["DENO_DIR": cacheDirectory, "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "DENO_NO_PROMPT": "1"]
        let outcome: ProcessRun.Outcome
        do {
            outcome = try await ProcessRun.run(executable: deno, arguments: Self.arguments + [root + "/" + entry], environment: environment, timeout: timeout)
        } catch {
            throw EdgeDeployRejection([EdgeDeployError(.denoUnavailable, "Deno cannot be started: \(error)", hint: unavailableHint)])
        }
        if outcome.timedOut {
            throw EdgeDeployRejection([
                EdgeDeployError(.denoUnavailable, "deno check did not finish within \(timeout)", hint: "try again; a very large bundle may need fewer or smaller modules")
            ])
        }
        if outcome.cancelled {
            throw EdgeDeployRejection([EdgeDeployError(.denoUnavailable, "the check was cancelled")])
        }
        if outcome.exitStatus == 0 { return }
        let text = String(decoding: outcome.output, as: UTF8.self)
        let roots = Array(Set([folder, root]))
        var problems = DenoDiagnostics.parse(text, roots: roots)
        if problems.isEmpty {
            let tail = text.split(separator: "\n").suffix(5).joined(separator: " | ")
            let status = outcome.exitStatus.map { "exited with status \($0)" } ?? "was killed by a signal"
            problems = [EdgeDeployError(.denoUnavailable, "deno check \(status): " + DenoDiagnostics.sanitize(tail, roots: roots), hint: unavailableHint)]
        }
        // An unlocated error Deno itself raised (a cache it cannot write) is not the code's fault.
        problems = problems.map { problem in
            var problem = problem
            if problem.code == .invalidBundle, problem.file == nil { problem.code = .denoUnavailable }
            return problem
        }
        throw EdgeDeployRejection(problems)
    }

    /// Writes `bundle` to a fresh folder under `scratch`, checks it, and removes the folder.
    public func check(_ bundle: FunctionBundle, scratch: String) async throws(EdgeDeployRejection) {
        let folder = (scratch.hasSuffix("/") ? String(scratch.dropLast()) : scratch) + "/check-" + UUID().uuidString
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try bundle.materialize(into: folder)
        } catch {
            throw EdgeDeployRejection([EdgeDeployError(.denoUnavailable, "the bundle cannot be written for checking: \(error)")])
        }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try await check(directory: folder, entrypoint: bundle.entrypoint)
    }
}
