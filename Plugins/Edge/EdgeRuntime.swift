import EdgeCore
import EdgeWorkers
import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres

/// What `start` sets up once per process and every portal's instance shares: the settings,
/// the epoll loop the workers' pipes wait on, the function store in the system database,
/// and the log writer.
final class EdgeRuntime: Sendable {
    let host: PluginHostServices
    let settings: EdgeSettings
    let loop: PostgresEventLoop
    let store: FunctionStore
    let logs: FunctionLogWriter
    /// The Deno side of every worker.
    let runnerPath: String

    init(host: PluginHostServices, settings: EdgeSettings, conninfo: String) {
        self.host = host
        self.settings = settings
        loop = PostgresEventLoop(name: "meltybase-edge")
        store = FunctionStore(conninfo: conninfo, loop: loop)
        logs = FunctionLogWriter(store: store, settings: settings, host: host)
        runnerPath = EdgeSettings.runnerPath
    }

    /// Where a version is unpacked on this kernel, named by its contents' hash: the deploy
    /// unpacks it there before it has a number, and a folder never holds other contents.
    func versionDirectory(portal: String, name: FunctionName, sha256: String) -> String {
        "\(settings.workDirectory)/portals/\(portal)/\(name.value)/\(sha256.prefix(16))"
    }

    /// Unpacks `bundle` into its version folder unless it is there already.
    func unpack(_ bundle: FunctionBundle, into directory: String) throws {
        guard !FileManager.default.fileExists(atPath: directory) else { return }
        do {
            let parent = URL(fileURLWithPath: directory).deletingLastPathComponent().path
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            try bundle.materialize(into: directory)
        } catch {
            throw EdgeRouteError(status: 503, code: "deploy_failed", message: "the function could not be unpacked in \(settings.workDirectory): \(error)")
        }
    }

    /// Deno's module cache of one portal's workers (never shared between portals).
    func denoDirectory(portal: String) -> String { "\(settings.workDirectory)/deno-cache/\(portal)" }

    /// The configured limits with the manifest's overrides.
    func limits(of manifest: FunctionManifest) throws -> EdgeLimits {
        guard let overrides = manifest.limits else { return settings.limits }
        guard case .object(let object) = overrides else {
            throw EdgeRouteError(status: 400, code: "invalid_limits", message: "function.json \"limits\" must be an object, found \(overrides.kind)")
        }
        do {
            return try EdgeLimits.parse(object, over: settings.limits)
        } catch {
            throw EdgeRouteError(status: 400, code: "invalid_limits", message: "function.json: \(error.message)")
        }
    }

    /// Stops the loop (process shutdown).
    func shutdown() async {
        await logs.flush()
        loop.shutdown()
    }
}
