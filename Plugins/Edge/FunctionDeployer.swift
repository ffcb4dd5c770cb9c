import EdgeCore
import EdgeWorkers
import Foundation
import MeltyJSON
import MeltyPluginSDK

/// A deploy, the same from the admin API, the Studio and `meltybase functions deploy`:
/// validate the manifest's limits, unpack the bundle, type-check it offline, boot it (a
/// version that cannot start is refused with the reason), and only then store it as the
/// new active version. Nothing half-deployed: every refusal happens before the store.
struct FunctionDeployer {
    let runtime: EdgeRuntime

    /// What a deploy produced.
    struct Deployed: Sendable {
        let version: Int
        let sha256: String
        /// The warm pool of the new version (in a kernel; nil in a command's process).
        let live: PortalFunctions.Live?
    }

    /// Deploys `bundle` as `name` of `portal`. In a kernel, `functions` boots the version's
    /// real pool (with its secrets), which becomes the active one; in a command's process
    /// (no portals) a trial worker boots without secret values and is stopped.
    func deploy(
        portal: String, name: FunctionName, bundle: FunctionBundle, createdBy: String, functions: PortalFunctions?
    ) async throws -> Deployed {
        guard runtime.settings.denoAvailable else {
            throw EdgeRouteError(status: 503, code: "deno_unavailable", message: runtime.settings.denoMissingHint)
        }
        let limits = try runtime.limits(of: bundle.manifest)
        let sha256 = FunctionDigest.sha256(of: bundle)
        let directory = runtime.versionDirectory(portal: portal, name: name, sha256: sha256)
        try runtime.unpack(bundle, into: directory)
        let checker = DeployChecker(deno: runtime.settings.denoPath, cacheDirectory: runtime.checkCache(portal: portal))
        try await checker.check(directory: directory, entrypoint: bundle.entrypoint)
        let live: PortalFunctions.Live?
        do {
            if let functions {
                live = try await functions.warm(name, version: 0, bundle: bundle, directory: directory)
            } else {
                try await trialBoot(name, bundle: bundle, directory: directory, limits: limits, portal: portal)
                live = nil
            }
        } catch let failure as WorkerStartError {
            throw EdgeDeployRejection([
                EdgeDeployError(
                    failure.message.contains("no handler") ? .missingExport : .invalidBundle, failure.message,
                    file: failure.location.map { Self.relative($0, in: directory) })
            ])
        }
        let stored: Int
        do {
            stored = try await runtime.store.deploy(portal: portal, name: name, bundle: bundle, createdBy: createdBy).version
        } catch {
            if let live { await live.pool.stop() }
            throw error
        }
        guard let functions, let live else { return Deployed(version: stored, sha256: sha256, live: nil) }
        live.logVersion.set(stored)
        let active = try await functions.activate(
            name, version: stored,
            prepared: PortalFunctions.Live(
                version: stored, logVersion: live.logVersion, manifest: live.manifest, limits: live.limits, pool: live.pool, confirmedAt: 0))
        return Deployed(version: stored, sha256: sha256, live: active)
    }

    /// Boots one worker of the bundle and stops it: the proof a command's deploy gives.
    private func trialBoot(_ name: FunctionName, bundle: FunctionBundle, directory: String, limits: EdgeLimits, portal: String) async throws {
        var environment = bundle.manifest.env
        for secret in bundle.manifest.secrets { environment[secret] = "" }
        var trial = limits
        trial.warmWorkers = 1
        let launch = try runtime.launch(
            portal: portal, directory: directory, entry: bundle.entrypoint, manifest: bundle.manifest, environment: environment, limits: trial)
        let pool = FunctionPool(name: name.value, launch: launch, loop: runtime.loop) { _ in }
        defer { Task { await pool.stop() } }
        try await pool.prewarm()
    }

    /// `file:///.../dir/lib/x.ts:3:7` → `lib/x.ts:3:7`.
    static func relative(_ location: String, in directory: String) -> String {
        var text = location
        if text.hasPrefix("file://") { text.removeFirst("file://".count) }
        if text.hasPrefix(directory + "/") { text.removeFirst(directory.count + 1) }
        return text
    }
}
