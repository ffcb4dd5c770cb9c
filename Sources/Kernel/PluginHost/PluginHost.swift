import Foundation
import Logging
import MeltyPluginABI
import NIOConcurrencyHelpers

/// The loaded plugins of this process, by name and by route prefix.
///
/// Libraries are loaded once per process and path (like `dlopen` itself), so several
/// kernels in one test process share them.
public final class PluginHost: @unchecked Sendable {
    /// Plugins that loaded and initialised, in config order.
    public let plugins: [LoadedPlugin]
    /// Plugins that were refused, with the one-line reason.
    public let failures: [PluginLoadError]
    private let byPrefix: [String: LoadedPlugin]
    private let byName: [String: LoadedPlugin]

    /// Plugins initialised in this process by path, with the number of kernels using them:
    /// `shutdown` runs when the last one stops (only tests run several kernels per process).
    private static let loaded = NIOLockedValueBox<[String: (plugin: LoadedPlugin, users: Int)]>([:])

    /// Loads every plugin of `configs`. A failure is logged in one line and skipped, unless
    /// the plugin is `required`, in which case the error is thrown and start-up stops.
    public init(configs: [PluginConfig], logger: Logger) throws {
        var plugins: [LoadedPlugin] = []
        var failures: [PluginLoadError] = []
        let loader = PluginLoader(hostAPI: HostServices.shared.table, logger: logger)
        for config in configs {
            do {
                let plugin = try Self.load(config, loader: loader, loaded: plugins)
                plugins.append(plugin)
                logger.info("plugin loaded", metadata: [
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
        self.byPrefix = Dictionary(plugins.flatMap { plugin in plugin.routePrefixes.map { ($0, plugin) } }, uniquingKeysWith: { first, _ in first })
        self.byName = Dictionary(plugins.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    private static func load(_ config: PluginConfig, loader: PluginLoader, loaded: [LoadedPlugin]) throws -> LoadedPlugin {
        let names = Set(loaded.map(\.name))
        let prefixes = Dictionary(loaded.flatMap { plugin in plugin.routePrefixes.map { ($0, plugin.name) } }, uniquingKeysWith: { first, _ in first })
        // The check and the load run under the lock so two kernels never init one library twice.
        return try Self.loaded.withLockedValue { cache in
            if let cached = cache[config.path]?.plugin {
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
                cache[config.path]?.users += 1
                return cached
            }
            let plugin = try loader.load(config, takenNames: names, takenPrefixes: prefixes)
            cache[config.path] = (plugin, 1)
            return plugin
        }
    }

    /// Calls every plugin's `shutdown` (after the portals destroyed their instances) when
    /// no other kernel of this process uses it; a later kernel loads it afresh.
    public func shutdown() {
        for plugin in plugins {
            let last = Self.loaded.withLockedValue { cache -> Bool in
                guard let entry = cache[plugin.path] else { return false }
                if entry.users > 1 {
                    cache[plugin.path]?.users -= 1
                    return false
                }
                cache[plugin.path] = nil
                return true
            }
            guard last else { continue }
            if PluginDescriptorLayout.has(\.shutdown, in: plugin.descriptor) { plugin.descriptor.pointee.shutdown?() }
            HostServices.shared.services.removeAll(plugin: plugin.name)
        }
    }

    /// The plugin serving `prefix`, if loaded.
    public func plugin(prefix: String) -> LoadedPlugin? { byPrefix[prefix] }

    /// The plugin called `name`, if loaded.
    public func plugin(named name: String) -> LoadedPlugin? { byName[name] }
}
