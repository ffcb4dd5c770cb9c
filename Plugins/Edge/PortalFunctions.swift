import EdgeCore
import EdgeWorkers
import Foundation
import MeltyJSON
import MeltyPluginSDK
import Synchronization

/// One portal's deployed functions on this kernel: the warm pool of each function's active
/// version, built when the version is deployed here or first invoked, replaced when
/// another version becomes active (a deploy or a rollback on any kernel: the store says),
/// and stopped with the portal. Pools are never shared between portals.
final class PortalFunctions: Sendable {
    /// A function's active version, warm.
    struct Live: Sendable {
        let version: Int
        /// The version its log lines are stored under (a deploy's pool boots before its number exists).
        let logVersion: LogVersion
        let manifest: FunctionManifest
        let limits: EdgeLimits
        let pool: FunctionPool
        /// When the store last confirmed this is the active version.
        var confirmedAt: Double
    }

    private enum Entry {
        case live(Live)
        case starting(version: Int, Task<Live, any Error>)
    }

    /// How long a confirmed version is used before the store is asked again (a rollback or
    /// deploy on another kernel is seen within this time).
    static let confirmInterval = 1.0

    let portal: Portal
    let runtime: EdgeRuntime
    private let entries = Mutex<[String: Entry]>([:])
    private let stopped = Mutex(false)

    init(portal: Portal, runtime: EdgeRuntime) {
        self.portal = portal
        self.runtime = runtime
    }

    /// The warm pool of `name`'s active version; throws ``EdgeRouteError`` (404 when there is
    /// no such function, 503 when its workers cannot start).
    func live(_ name: FunctionName) async throws -> Live {
        let now = Date().timeIntervalSince1970
        if case .live(let live)? = entries.withLock({ $0[name.value] }), now - live.confirmedAt < Self.confirmInterval {
            return live
        }
        guard let record = try await runtime.store.function(portal: portal.name, name: name) else {
            throw EdgeRouteError(
                status: 404, code: "function_not_found", message: "portal \"\(portal.name)\" has no function \"\(name)\"",
                hint: "deploy it with `meltybase functions deploy --portal \(portal.name) \(name) <folder>`")
        }
        return try await activate(name, version: record.activeVersion)
    }

    /// Makes `version` of `name` the warm one here (reusing it when it already is) and
    /// returns it; the pool of a replaced version drains and stops.
    func activate(_ name: FunctionName, version: Int, prepared: Live? = nil) async throws -> Live {
        enum Step {
            case ready(Live)
            case wait(Task<Live, any Error>)
        }
        let now = Date().timeIntervalSince1970
        let step = entries.withLock { entries -> Step in
            switch entries[name.value] {
            case .live(var live)? where live.version == version:
                live.confirmedAt = now
                entries[name.value] = .live(live)
                return .ready(live)
            case .starting(let starting, let task)? where starting == version:
                return .wait(task)
            default:
                let task = Task { [self] in
                    if let prepared { return prepared }
                    return try await start(name, version: version)
                }
                entries[name.value] = .starting(version: version, task)
                return .wait(task)
            }
        }
        switch step {
        case .ready(let live):
            return live
        case .wait(let task):
            do {
                var live = try await task.value
                live.confirmedAt = Date().timeIntervalSince1970
                let replaced = entries.withLock { entries -> FunctionPool? in
                    var old: FunctionPool?
                    if case .live(let previous)? = entries[name.value], previous.pool !== live.pool { old = previous.pool }
                    entries[name.value] = .live(live)
                    return old
                }
                if let replaced { Task { await replaced.stop() } }
                if stopped.withLock({ $0 }) { await live.pool.stop() }
                return live
            } catch {
                entries.withLock { entries in
                    if case .starting(let starting, _)? = entries[name.value], starting == version { entries[name.value] = nil }
                }
                throw error
            }
        }
    }

    /// Builds and warms the pool of a stored version: unpacks it (once per kernel), reads
    /// its secrets from the Vault, starts its warm workers.
    private func start(_ name: FunctionName, version: Int) async throws -> Live {
        let stored: (version: Int, bundle: FunctionBundle)
        do {
            stored = try await runtime.store.bundle(portal: portal.name, name: name, version: version)
        } catch {
            if case .functionNotFound = error {
                throw EdgeRouteError(status: 404, code: "function_not_found", message: "function \"\(name)\" has no version \(version) any more")
            }
            throw error
        }
        let directory = runtime.versionDirectory(portal: portal.name, name: name, sha256: FunctionDigest.sha256(of: stored.bundle))
        try runtime.unpack(stored.bundle, into: directory)
        return try await warm(name, version: version, bundle: stored.bundle, directory: directory)
    }

    /// A warm pool for `bundle` unpacked in `directory` (the deploy path calls this before
    /// the version is stored, so a version that cannot boot is never stored).
    func warm(_ name: FunctionName, version: Int, bundle: FunctionBundle, directory: String) async throws -> Live {
        let limits = try runtime.limits(of: bundle.manifest)
        var environment = bundle.manifest.env
        for (key, value) in try await secrets(of: bundle.manifest, function: name, version: version) { environment[key] = value }
        let launch = try runtime.launch(
            portal: portal.name, directory: directory, entry: bundle.entrypoint, manifest: bundle.manifest, environment: environment,
            limits: limits)
        let logs = runtime.logs
        let portalName = portal.name
        let logVersion = LogVersion(version)
        let host = runtime.host
        let meteredPortal = portal
        // The Hub meters CPU and memory × time per portal (docs/hub.md: edge_cpu_ms, edge_memory_mb_ms).
        let usageSink: @Sendable (EdgeUsage) -> Void = { usage in
            if usage.cpuMilliseconds > 0 { host.count("edge_cpu_ms", by: Int64(usage.cpuMilliseconds), portal: meteredPortal) }
            if usage.megabyteMilliseconds > 0 { host.count("edge_memory_mb_ms", by: Int64(usage.megabyteMilliseconds), portal: meteredPortal) }
        }
        let pool = FunctionPool(name: name.value, launch: launch, loop: runtime.loop, usageSink: usageSink) { line in
            logs.append(portal: portalName, name: name, version: logVersion.value, line)
        }
        do {
            try await pool.prewarm()
        } catch {
            await pool.stop()
            throw error
        }
        return Live(
            version: version, logVersion: logVersion, manifest: bundle.manifest, limits: limits, pool: pool, confirmedAt: Date().timeIntervalSince1970)
    }

    /// The Vault secrets the manifest lists, read through `vault.v1` as this plugin on the
    /// deployer's behalf (audited by the Vault per secret).
    private func secrets(of manifest: FunctionManifest, function: FunctionName, version: Int) async throws -> [String: String] {
        guard !manifest.secrets.isEmpty else { return [:] }
        let caller = PluginCredential.plugin("edge", grant: "function \(function) v\(version) lists this secret in its function.json")
        var values: [String: String] = [:]
        for secret in manifest.secrets {
            let reply: [UInt8]
            do {
                reply = try await runtime.host.callService("vault", major: 1, method: "get", arguments: ["name": .string(secret)], caller: caller, portal: portal)
            } catch {
                throw EdgeRouteError(
                    status: 503, code: "secret_unavailable",
                    message: "function \"\(function)\" lists the secret \"\(secret)\", which could not be read from portal \"\(portal.name)\"'s Vault: \(error)",
                    hint: "create it (POST /p/\(portal.name)/vault/v1/secrets) and enable the vault plugin for the portal, or remove it from function.json")
            }
            guard let value = JSONValue.object(json: reply)?["value"]?.stringValue else {
                throw EdgeRouteError(status: 503, code: "secret_unavailable", message: "the Vault's answer for secret \"\(secret)\" has no value")
            }
            values[secret] = value
        }
        return values
    }

    /// Makes this kernel follow the store for `name`: warms its active version, or stops it
    /// when it was deleted. Failures are logged (the next request retries).
    func follow(_ name: FunctionName) async {
        do {
            guard let record = try await runtime.store.function(portal: portal.name, name: name) else {
                await forget(name)
                return
            }
            _ = try await activate(name, version: record.activeVersion)
        } catch {
            runtime.host.log(.warning, "edge: function \(name) could not be warmed after a change: \(error)", portal: portal)
        }
    }

    /// ``follow(_:)`` for every function warm here.
    func followAll() async {
        let names = entries.withLock { Array($0.keys) }
        for name in names { if let name = try? FunctionName(name) { await follow(name) } }
    }

    /// Forgets `name` here (deleted) and stops its pool.
    func forget(_ name: FunctionName) async {
        let removed = entries.withLock { $0.removeValue(forKey: name.value) }
        switch removed {
        case .live(let live)?: await live.pool.stop()
        case .starting(_, let task)?: if let live = try? await task.value { await live.pool.stop() }
        case nil: break
        }
    }

    /// Live counters of each warm function.
    var stats: [String: (version: Int, stats: FunctionPoolStats)] {
        entries.withLock { entries in
            var result: [String: (version: Int, stats: FunctionPoolStats)] = [:]
            for (name, entry) in entries { if case .live(let live) = entry { result[name] = (live.version, live.pool.stats) } }
            return result
        }
    }

    /// Stops every pool (the portal disabled the plugin, or the kernel stops).
    func stopAll() async {
        stopped.withLock { $0 = true }
        let all = entries.withLock { entries -> [Entry] in
            defer { entries.removeAll() }
            return Array(entries.values)
        }
        for entry in all {
            switch entry {
            case .live(let live): await live.pool.stop()
            case .starting(_, let task): if let live = try? await task.value { await live.pool.stop() }
            }
        }
    }
}

/// The version number a pool's log lines carry; set once a deploy's version is stored
/// (lines logged while it boots, before the number exists, are not kept).
final class LogVersion: Sendable {
    private let number: Atomic<Int>
    init(_ value: Int) { number = Atomic(value) }
    var value: Int { number.load(ordering: .relaxed) }
    func set(_ value: Int) { number.store(value, ordering: .relaxed) }
}

/// A refusal the Edge routes answer as `{code, message, hint}` with `status`.
struct EdgeRouteError: Error, CustomStringConvertible {
    let status: Int
    let code: String
    let message: String
    var hint: String?

    init(status: Int, code: String, message: String, hint: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
    }

    var description: String { message }

    /// The JSON answer.
    var response: PluginResponse { .error(status: status, code: code, message: message, hint: hint) }
}
