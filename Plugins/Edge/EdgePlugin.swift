import EdgeCore
import EdgeWorkers
import Foundation
import MeltyPluginSDK
import Synchronization

/// The Edge plugin: a portal's Deno functions, invoked at `/p/<portal>/functions/v1/<name>`
/// (Supabase's path; supabase clients' `functions.invoke` works unchanged) and managed at
/// `/p/<portal>/edge/v1/functions`, with `meltybase functions ...` and the Studio's Edge
/// page. Each function version runs in warm Deno worker processes of its portal only,
/// sandboxed by Deno's permissions and bounded in CPU, memory, wall-clock time and sizes.
/// See `docs/edge.md`.
public final class EdgePlugin: PortalPlugin {
    /// Name, version and prefixes: `functions` streams bodies both ways (ABI 1.7).
    public static let description = PluginDescription(
        name: "edge", version: "0.1.0", routePrefix: "functions", extraRoutePrefixes: ["edge"], streamingRoutePrefixes: ["functions"])

    /// The Edge page of the Studio: functions, versions, deploy, logs.
    public static var studio: StudioDefinition? {
        StudioDefinition(directory: "MeltyBase_EdgePlugin.resources/Studio", pages: [StudioPageDefinition(id: "functions", title: "Edge functions", module: "edge.js")])
    }

    /// `meltybase edge deploy | list | versions | rollback | delete | logs` (also `meltybase functions ...`).
    public static var commands: [PluginCommandDefinition] { EdgeCommands.all }

    /// Whether Deno is there and the store answers.
    public static var healthCheck: (@Sendable () async -> PluginHealthReport)? {
        {
            guard let runtime = Self.runtime else { return PluginHealthReport(.failing, "not started") }
            guard runtime.settings.denoAvailable else { return PluginHealthReport(.failing, runtime.settings.denoMissingHint) }
            do {
                _ = try await runtime.store.pool.run { try await $0.query("SELECT 1") }
                return PluginHealthReport(.ok, "deno at \(runtime.settings.denoPath)")
            } catch {
                return PluginHealthReport(.degraded, "the function store does not answer: \(error)")
            }
        }
    }

    private static let current = Mutex<EdgeRuntime?>(nil)
    /// What `start` set up (nil before, and in a process that refused the plugin).
    static var runtime: EdgeRuntime? { current.withLock { $0 } }

    let functions: PortalFunctions

    /// Reads the settings and opens the function store (its schema is created on first use).
    public static func start(host: PluginHostServices, config: PluginConfig) throws {
        let settings = try EdgeSettings(config: config)
        if !settings.denoAvailable { host.log(.warning, "edge: \(settings.denoMissingHint); functions answer 503 until it is installed") }
        let runnerPath = EdgeSettings.runnerPath
        guard FileManager.default.fileExists(atPath: runnerPath) else {
            throw PluginError.invalid("edge: the worker runtime \(runnerPath) is missing: install the plugin with its resources folder")
        }
        let runtime = EdgeRuntime(host: host, settings: settings, runnerPath: runnerPath, conninfo: try host.postgresConninfo(portal: nil))
        current.withLock { $0 = runtime }
    }

    /// The portal's functions (their pools start on first use or deploy).
    public init(portal: Portal, config: PluginConfig) throws {
        guard let runtime = Self.runtime else { throw PluginError.unavailable("edge: the plugin did not start") }
        functions = PortalFunctions(portal: portal, runtime: runtime)
        runtime.serve(functions)
    }

    /// Invocations on `functions`, the admin API on `edge`.
    public func handle(_ request: PluginRequest) async -> PluginResponse {
        if request.routePrefix == "edge" { return await EdgeAdminRoutes(functions: functions).handle(request) }
        return await FunctionInvocation(functions: functions).handle(request)
    }

    /// The portal disabled the plugin: its workers stop.
    public func stop() {
        let functions = functions
        functions.runtime.unserve(functions)
        Task { await functions.stopAll() }
    }

    /// Process shutdown: pending log lines are written.
    public static func shutdown() {
        guard let runtime = Self.runtime else { return }
        let done = DispatchSemaphore(value: 0)
        Task {
            await runtime.shutdown()
            done.signal()
        }
        _ = done.wait(timeout: .now() + 5)
    }
}

/// The plugin's entry symbol.
@_cdecl("meltybase_plugin_entry")
public func meltybasePluginEntry() -> UnsafeRawPointer { PluginExport.descriptor(for: EdgePlugin.self) }
