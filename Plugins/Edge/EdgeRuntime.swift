import EdgeCore
import EdgeWorkers
import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import MeltyProcess
import Synchronization

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
    /// The system database (the store's, and its change notifications').
    let conninfo: String
    /// The unprivileged account workers run as (the kernel is root); nil: the kernel's user.
    let workerAccount: SystemAccount?
    /// The portals this kernel serves, and the task that hears the store's changes (started
    /// with the first portal: a command's process has none).
    private let served = Mutex<(portals: [String: PortalFunctions], listener: Task<Void, Never>?)>(([:], nil))

    init(host: PluginHostServices, settings: EdgeSettings, runnerPath: String, conninfo: String) {
        self.host = host
        loop = PostgresEventLoop(name: "meltybase-edge")
        store = FunctionStore(conninfo: conninfo, loop: loop)
        self.runnerPath = runnerPath
        self.conninfo = conninfo
        var account: SystemAccount?
        if getuid() == 0, !settings.workerUser.isEmpty {
            do {
                account = try SystemAccount.ensure(settings.workerUser, purpose: "to run Edge functions' Deno workers")
            } catch {
                host.log(.error, "edge: \(error); Deno workers run as root, sandboxed by Deno's permissions only")
            }
        }
        workerAccount = account
        var settings = settings
        if let account, !account.canReach(directory: settings.workDirectory) {
            // The work folder sits below one the worker account cannot enter (a checkout in
            // /root, say): keep unpacked functions and caches in a folder of the same name
            // elsewhere, as the embedded Postgres does with its cluster.
            let relocated = "/var/lib/meltybase-edge/" + FunctionDigest.sha256(text: settings.workDirectory).prefix(16)
            host.log(.notice, "edge: functions are unpacked in \(relocated): the account \(account.name) cannot enter \(settings.workDirectory)")
            settings.workDirectory = relocated
        }
        self.settings = settings
        logs = FunctionLogWriter(store: store, settings: settings, host: host)
    }

    /// A launch of `entry` in `directory` for `portal`, as the worker account.
    func launch(
        portal: String, directory: String, entry: String, manifest: FunctionManifest, environment: [String: String], limits: EdgeLimits
    )
        throws -> WorkerLaunch
    {
        var launch = WorkerLaunch(
            denoPath: settings.denoPath, runnerPath: runnerPath, functionDirectory: directory, entryPath: directory + "/" + entry,
            denoDirectory: try workerCache(portal: portal), allowNet: manifest.allowNet, environment: environment, limits: limits)
        launch.account = workerAccount.map { ($0.uid, $0.gid) }
        return launch
    }

    /// The portal's Deno module cache for its workers, created and given to the worker
    /// account (Deno writes its cache there as that account).
    private func workerCache(portal: String) throws -> String {
        let directory = "\(settings.workDirectory)/deno-cache/\(portal)"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try workerAccount?.own(directory)
        } catch {
            throw EdgeRouteError(status: 503, code: "worker_unavailable", message: "the workers' module cache \(directory) cannot be prepared: \(error)")
        }
        return directory
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

    /// Deno's cache for one portal's deploy checks (never shared between portals; apart from
    /// the workers', which run as another account).
    func checkCache(portal: String) -> String { "\(settings.workDirectory)/check-cache/\(portal)" }

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

    /// Registers a portal's functions; the first one starts listening to the store.
    func serve(_ functions: PortalFunctions) {
        let start = served.withLock { served -> Bool in
            served.portals[functions.portal.name] = functions
            return served.listener == nil
        }
        guard start else { return }
        let listener = PostgresListener(conninfo: conninfo, channels: [EdgeSchema.channel], loop: loop)
        // The runtime lives for the process: the listener holds it until shutdown cancels it.
        let task = Task { [self] in
            await listener.run { event in
                switch event {
                case .notification(_, let payload): await self.changed(payload)
                case .listening(afterOutage: true): await self.refreshAll()
                case .listening, .lost: break
                }
            }
        }
        served.withLock { $0.listener = task }
    }

    /// Forgets a portal's functions (the portal disabled the plugin).
    func unserve(_ functions: PortalFunctions) {
        served.withLock { served in
            if served.portals[functions.portal.name] === functions { served.portals[functions.portal.name] = nil }
        }
    }

    /// `<portal>/<name>` changed in the store (a deploy, rollback or delete on any kernel or
    /// command): the portal's functions here follow at once, so a version deployed by
    /// `meltybase functions deploy` is warm before its first request.
    private func changed(_ payload: String) async {
        guard let slash = payload.firstIndex(of: "/") else { return }
        let portal = String(payload[..<slash])
        guard let functions = served.withLock({ $0.portals[portal] }), let name = try? FunctionName(String(payload[payload.index(after: slash)...]))
        else { return }
        await functions.follow(name)
    }

    /// After a lost connection: every known function is checked against the store.
    private func refreshAll() async {
        for functions in served.withLock({ Array($0.portals.values) }) { await functions.followAll() }
    }

    /// Process shutdown: stops every worker and writes pending log lines.
    func shutdown() async {
        let (portals, listener) = served.withLock { served in
            defer { served = ([:], nil) }
            return (Array(served.portals.values), served.listener)
        }
        listener?.cancel()
        for functions in portals { await functions.stopAll() }
        await logs.flush()
        loop.shutdown()
    }
}
