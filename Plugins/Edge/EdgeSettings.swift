import EdgeWorkers
import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyProcess

/// `[plugins.edge.config]`: where Deno is, where functions are unpacked, the default limits
/// of every function and how long logs are kept. Unknown keys and bad values refuse the
/// plugin with a message naming the key.
struct EdgeSettings: Sendable {
    /// The `deno` executable (absolute, found on PATH when configured as a bare name).
    var denoPath: String
    /// Where each kernel unpacks function versions and keeps Deno's module cache.
    var workDirectory: String
    /// Limits of every function unless its function.json overrides them.
    var limits: EdgeLimits
    /// Days a function's log lines are kept.
    var logRetentionDays: Int
    /// Newest log lines kept per function, whatever their age.
    var logKeepPerFunction: Int
    /// The unprivileged account workers run as when the kernel is root ("" keeps root).
    var workerUser: String

    init(config: PluginConfig) throws {
        try config.refuseUnknownKeys(["deno_path", "work_dir", "limits", "log_retention_days", "log_keep_per_function", "worker_user"], plugin: "edge")
        let deno = try config.string("deno_path", plugin: "edge") ?? "deno"
        denoPath = ChildSpawn.executable(named: deno) ?? deno
        let work = try config.string("work_dir", plugin: "edge") ?? ".meltybase/edge"
        workDirectory = URL(fileURLWithPath: work, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardized.path
        switch config["limits"] {
        case nil:
            limits = EdgeLimits()
        case .object(let object)?:
            do {
                limits = try EdgeLimits.parse(object)
            } catch {
                throw PluginError.invalid("[plugins.edge.config.limits]: \(error.message)")
            }
        case let other?:
            throw PluginError.invalid("[plugins.edge.config] limits must be a table of limits, found \(other.kind)")
        }
        logRetentionDays = try config.integer("log_retention_days", in: 1...3650, plugin: "edge") ?? 7
        logKeepPerFunction = try config.integer("log_keep_per_function", in: 100...10_000_000, plugin: "edge") ?? 10_000
        workerUser = try config.string("worker_user", plugin: "edge") ?? "meltybase-edge"
    }

    /// Whether `denoPath` names an executable file.
    var denoAvailable: Bool { FileManager.default.isExecutableFile(atPath: denoPath) }

    /// What to tell a user when Deno is missing.
    var denoMissingHint: String {
        "Deno was not found at \"\(denoPath)\": run scripts/setup.sh (it installs Deno into .venv with pip), or set [plugins.edge.config] deno_path"
    }

    /// The folder of the plugin's shared library (its resources sit beside it): the file
    /// mapped at the address of a function of this library, from /proc/self/maps.
    static var libraryDirectory: String {
        let address = UInt(bitPattern: unsafeBitCast(EdgeSettings.anchor, to: UnsafeRawPointer.self))
        let maps = (try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)) ?? ""
        for line in maps.split(separator: "\n") {
            // "start-end perms offset dev inode path"
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, let dash = fields[0].firstIndex(of: "-"),
                let start = UInt(fields[0][..<dash], radix: 16), let end = UInt(fields[0][fields[0].index(after: dash)...], radix: 16),
                (start..<end).contains(address)
            else { continue }
            let path = fields[5...].joined(separator: " ")
            return URL(fileURLWithPath: path).deletingLastPathComponent().path
        }
        return FileManager.default.currentDirectoryPath
    }

    /// The Deno side of every worker, shipped in the plugin's resources.
    static var runnerPath: String { libraryDirectory + "/MeltyBase_EdgePlugin.resources/Runtime/runner.js" }

    /// A function of this library, whose address `dladdr` maps to the library's file.
    private static let anchor: @convention(c) () -> Void = {}
}
