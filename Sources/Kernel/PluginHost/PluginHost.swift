import Foundation
import Logging
import MeltyPluginABI
import Synchronization

/// One kernel's loaded plugins, by name and by route prefix.
///
/// Libraries are loaded once per process and path (like `dlopen` itself, whose mapping and
/// the plugin's own globals are process-wide), so several kernels in one test process share
/// them; each kernel keeps its own service registry, requests and connections.
public final class PluginHost: Sendable {
    /// Plugins that loaded and initialised, in config order.
    public let plugins: [LoadedPlugin]
    /// Plugins that were refused, with the one-line reason.
    public let failures: [PluginLoadError]
    /// The kernel state behind the host functions these plugins call.
    let context: HostContext
    private let byPrefix: [String: LoadedPlugin]
    private let byName: [String: LoadedPlugin]

    /// A library being initialised or initialised, with the number of kernels using it.
    private struct Library {
        let load: Task<LoadedPlugin, any Error>
        var users: Int
    }

    /// Libraries initialised in this process by path: `shutdown` runs when the last kernel
    /// using one stops (only tests run several kernels per process). Process-wide because
    /// `dlopen` is: a second `init` on the same image would clobber the plugin's globals.
    private static let libraries = Mutex<[String: Library]>([:])

    /// Loads every plugin of `configs` for the kernel owning `context`. A failure is logged
    /// in one line and skipped, unless the plugin is `required`, in which case the error is
    /// thrown and start-up stops. Each `init` runs on the context's blocking pool.
    public convenience init(configs: [PluginConfig], logger: Logger) async throws {
        try await self.init(configs: configs, context: HostContext(logger: logger))
    }

    init(configs: [PluginConfig], context: HostContext) async throws {
        var plugins: [LoadedPlugin] = []
        var failures: [PluginLoadError] = []
        let logger = context.logger
        let loader = PluginLoader(context: context)
        for config in configs {
            do {
                let plugin = try await Self.load(config, loader: loader, loaded: plugins)
                plugins.append(plugin)
                logger.info(
                    "plugin loaded",
                    metadata: [
                        "plugin": "\(plugin.name)", "version": "\(plugin.version)", "abi": "\(plugin.abiVersion)",
                        "prefix": "\(plugin.routePrefixes.joined(separator: ","))", "path": "\(plugin.path)",
                    ])
            } catch let error as PluginLoadError {
                if config.required { throw error }
                logger.error("\(error.description)")
                failures.append(error)
            }
        }
        self.plugins = plugins
        self.failures = failures
        self.context = context
        self.byPrefix = Dictionary(plugins.flatMap { plugin in plugin.routePrefixes.map { ($0, plugin) } }, uniquingKeysWith: { first, _ in first })
        self.byName = Dictionary(plugins.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    private static func load(_ config: PluginConfig, loader: PluginLoader, loaded: [LoadedPlugin]) async throws -> LoadedPlugin {
        let names = Set(loaded.map(\.name))
        let prefixes = Dictionary(loaded.flatMap { plugin in plugin.routePrefixes.map { ($0, plugin.name) } }, uniquingKeysWith: { first, _ in first })
        // Claim the path, or join the kernel that already loads it, so one library is never initialised twice.
        let (task, fresh) = libraries.withLock { libraries -> (Task<LoadedPlugin, any Error>, Bool) in
            if let library = libraries[config.path] {
                libraries[config.path]?.users += 1
                return (library.load, false)
            }
            let task = Task { try await loader.load(config, takenNames: names, takenPrefixes: prefixes) }
            libraries[config.path] = Library(load: task, users: 1)
            return (task, true)
        }
        do {
            let plugin = try await task.value
            if !fresh { try adopt(plugin, config: config, names: names, prefixes: prefixes, context: loader.context) }
            return plugin
        } catch {
            release(path: config.path, failedLoad: fresh)
            throw error
        }
    }

    /// The checks a plugin loaded by another kernel must pass here too; then its exports join this kernel's registry.
    private static func adopt(_ cached: LoadedPlugin, config: PluginConfig, names: Set<String>, prefixes: [String: String], context: HostContext) throws {
        func refuse(_ reason: String) -> PluginLoadError { PluginLoadError(plugin: config.name, path: config.path, reason: reason) }
        if names.contains(cached.name) {
            throw refuse("name \"\(cached.name)\" is already taken by another loaded plugin; plugin names must be unique")
        }
        guard cached.name == config.name else {
            throw refuse("descriptor field name: expected \"\(config.name)\" (the [plugins.\(config.name)] table), found \"\(cached.name)\"")
        }
        for prefix in cached.routePrefixes {
            if let owner = prefixes[prefix] { throw refuse("route prefix \"\(prefix)\" is already served by plugin \"\(owner)\"") }
        }
        if context !== cached.handle.context, let problem = cached.handle.adoptExports(into: context.services) {
            throw refuse(problem)
        }
    }

    /// Drops one user of a library; true when it was the last (the caller shuts it down).
    @discardableResult
    private static func release(path: String, failedLoad: Bool = false) -> Bool {
        libraries.withLock { libraries -> Bool in
            guard let library = libraries[path] else { return false }
            if failedLoad || library.users <= 1 {
                libraries[path] = nil
                return !failedLoad
            }
            libraries[path]?.users -= 1
            return false
        }
    }

    /// Calls every plugin's `shutdown` (after the portals destroyed their instances), on the
    /// blocking pool, when no other kernel of this process uses it; a later kernel loads it afresh.
    public func shutdown() async {
        for plugin in plugins {
            guard Self.release(path: plugin.path) else { continue }
            if PluginDescriptorLayout.has(\.shutdown, in: plugin.descriptor) {
                let descriptor = SharedPointer(plugin.descriptor)
                do {
                    try await context.runBlocking { descriptor.pointer.pointee.shutdown?() }
                } catch {
                    // The pool is gone (the kernel is closing): run it here rather than skip it.
                    descriptor.pointer.pointee.shutdown?()
                }
            }
            plugin.handle.dropExports()
        }
    }

    /// Every loaded plugin's health (ABI 1.5 `health`), asked concurrently, each bounded by
    /// ``PluginHealth/timeout``; by plugin name.
    public func health() async -> [String: PluginHealth] {
        await withTaskGroup(of: (String, PluginHealth).self) { group in
            for plugin in plugins {
                group.addTask { (plugin.name, await PluginHealth.check(plugin, context: self.context)) }
            }
            var result: [String: PluginHealth] = [:]
            for await (name, health) in group { result[name] = health }
            return result
        }
    }

    /// The plugin serving `prefix`, if loaded.
    public func plugin(prefix: String) -> LoadedPlugin? { byPrefix[prefix] }

    /// The plugin called `name`, if loaded.
    public func plugin(named name: String) -> LoadedPlugin? { byName[name] }
}
