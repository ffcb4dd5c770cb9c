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

    private static let loaded = NIOLockedValueBox<[String: LoadedPlugin]>([:])

    /// Loads every plugin of `configs`. A failure is logged in one line and skipped, unless
    /// the plugin is `required`, in which case the error is thrown and start-up stops.
    public init(configs: [PluginConfig], logger: Logger) throws {
        var plugins: [LoadedPlugin] = []
        var failures: [PluginLoadError] = []
        let loader = PluginLoader(hostAPI: HostServices.shared.table, logger: logger)
        for config in configs {
            do {
                let taken = Set(plugins.map(\.name))
                let plugin: LoadedPlugin
                if let cached = Self.loaded.withLockedValue({ $0[config.path] }) {
                    guard !taken.contains(cached.name) else {
                        throw PluginLoadError(plugin: config.name, path: config.path, reason: "name \"\(cached.name)\" is already taken by another loaded plugin; plugin names must be unique")
                    }
                    plugin = cached
                } else {
                    plugin = try loader.load(config, takenNames: taken)
                    Self.loaded.withLockedValue { $0[config.path] = plugin }
                }
                if let clash = plugins.first(where: { $0.routePrefix == plugin.routePrefix }) {
                    throw PluginLoadError(plugin: config.name, path: config.path, reason: "route prefix \"\(plugin.routePrefix)\" is already served by plugin \"\(clash.name)\"")
                }
                plugins.append(plugin)
                logger.info("plugin loaded", metadata: [
                    "plugin": "\(plugin.name)", "version": "\(plugin.version)", "abi": "\(plugin.abiVersion)",
                    "prefix": "\(plugin.routePrefix)", "path": "\(plugin.path)",
                ])
            } catch let error as PluginLoadError {
                if config.required {
                    throw error
                }
                logger.error("\(error.description)")
                failures.append(error)
            }
        }
        self.plugins = plugins
        self.failures = failures
        self.byPrefix = Dictionary(plugins.map { ($0.routePrefix, $0) }, uniquingKeysWith: { first, _ in first })
        self.byName = Dictionary(plugins.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The plugin serving `prefix`, if loaded.
    public func plugin(prefix: String) -> LoadedPlugin? { byPrefix[prefix] }

    /// The plugin called `name`, if loaded.
    public func plugin(named name: String) -> LoadedPlugin? { byName[name] }
}
