import Foundation
import Logging
import MeltyPluginABI
import NIOConcurrencyHelpers

/// A plugin library that is mapped, checked and initialised.
///
/// Its code stays mapped for the life of the process (`RTLD_NODELETE`, never `dlclose`):
/// enabling or disabling it for a portal only creates or destroys an instance.
public final class LoadedPlugin: Sendable {
    /// Unique plugin name from the descriptor.
    public let name: String
    /// Plugin version from the descriptor.
    public let version: String
    /// Route prefix below `/p/<portal>/`.
    public let routePrefix: String
    /// Every prefix the plugin serves: `routePrefix` first, then its extra prefixes (ABI 1.1).
    public let routePrefixes: [String]
    /// ABI version the plugin was compiled against, `major.minor`.
    public let abiVersion: String
    /// Build signature (`c;ptr64`, `swift-6.3;ptr64`).
    public let buildSignature: String
    /// Path of the shared library.
    public let path: String
    /// The plugin's immortal descriptor.
    var descriptor: UnsafePointer<mb_plugin_descriptor> { sharedDescriptor.pointer }
    private let sharedDescriptor: SharedPointer<UnsafePointer<mb_plugin_descriptor>>
    /// The handle passed to the plugin in every host call that needs one.
    let handle: PluginHandle
    /// Studio pages, Studio folder, commands and health (ABI 1.5), checked at load.
    let extensions: PluginExtensions
    /// A `health` call is running on the blocking pool: a plugin whose check hangs holds at
    /// most one pool thread, however often the overview asks.
    let healthInFlight = NIOLockedValueBox(false)

    /// The plugin's Studio pages (ABI 1.5; empty when it declares none).
    public var studioPages: [PluginStudioPage] { extensions.pages }
    /// The plugin's command-line commands (ABI 1.5; empty when it declares none).
    public var commands: [PluginCommand] { extensions.commands }
    /// Whether the plugin reports its health (ABI 1.5 `health`).
    public var reportsHealth: Bool { extensions.reportsHealth }
    /// Version of the plugin's Studio folder (nil without one): part of its asset URLs.
    public var studioVersion: String? { extensions.studio?.files.version }

    init(descriptor: UnsafePointer<mb_plugin_descriptor>, path: String, handle: PluginHandle, extensions: PluginExtensions = PluginExtensions()) {
        let value = descriptor.pointee
        self.sharedDescriptor = SharedPointer(descriptor)
        self.name = String(cString: value.name)
        self.version = String(cString: value.version)
        self.routePrefix = String(cString: value.route_prefix)
        self.routePrefixes = [routePrefix] + Self.extraPrefixes(of: descriptor)
        self.streamingPrefixes = Self.streamingPrefixes(of: descriptor, served: routePrefixes)
        self.abiVersion = "\(value.abi_major).\(value.abi_minor)"
        self.buildSignature = String(cString: value.build_signature)
        self.path = path
        self.handle = handle
        self.extensions = extensions
    }

    /// Where the Studio fetches the module of `page`:
    /// `/dashboard/plugins/<name>/assets/<version>/<module>`; nil without a Studio folder.
    public func moduleURL(of page: PluginStudioPage) -> String? {
        guard let version = studioVersion else { return nil }
        return "\(PluginStudioRoutes.prefix)\(name)/assets/\(version)/\(page.module)"
    }

    /// The descriptor's `extra_route_prefixes` (empty before ABI 1.1 or when NULL).
    static func extraPrefixes(of descriptor: UnsafePointer<mb_plugin_descriptor>) -> [String] {
        guard PluginDescriptorLayout.has(\.extra_route_prefixes, in: descriptor), var cursor = descriptor.pointee.extra_route_prefixes else { return [] }
        var prefixes: [String] = []
        // Bounded so a list missing its NULL terminator cannot run away.
        while let pointer = cursor.pointee, prefixes.count < 16 {
            prefixes.append(String(cString: pointer))
            cursor += 1
        }
        return prefixes
    }

    /// Whether the plugin takes `cancel_request` (ABI 1.3, optional).
    public var cancelsRequests: Bool {
        PluginDescriptorLayout.has(\.cancel_request, in: descriptor) && descriptor.pointee.cancel_request != nil
    }

    /// The route prefixes whose requests stream (ABI 1.7 `streaming_route_prefixes`, only
    /// those the plugin serves).
    public let streamingPrefixes: Set<String>

    /// The descriptor's `streaming_route_prefixes` that are among `served`.
    static func streamingPrefixes(of descriptor: UnsafePointer<mb_plugin_descriptor>, served routePrefixes: [String]) -> Set<String> {
        guard PluginDescriptorLayout.has(\.streaming_route_prefixes, in: descriptor), var cursor = descriptor.pointee.streaming_route_prefixes else { return [] }
        var prefixes: Set<String> = []
        // Bounded so a list missing its NULL terminator cannot run away.
        var seen = 0
        while let pointer = cursor.pointee, seen < 16 {
            let prefix = String(cString: pointer)
            if routePrefixes.contains(prefix) { prefixes.insert(prefix) }
            cursor += 1
            seen += 1
        }
        return prefixes
    }

    /// Whether the plugin accepts WebSocket connections.
    public var acceptsWebSockets: Bool {
        descriptor.pointee.ws_open != nil && PluginDescriptorLayout.has(\.ws_open, in: descriptor)
    }
}

/// Kernel-side identity of one loaded plugin, handed to the plugin as `mb_host_plugin *`.
///
/// It belongs to the kernel that ran the plugin's `init` (its ``HostContext`` takes the
/// plugin's log lines, portal-less audit entries and service exports). A library is mapped
/// once per process, so another kernel of the process that loads the same path reuses the
/// plugin and adopts its exports (``ServiceRegistry``).
final class PluginHandle: Sendable {
    let name: String
    let logger: Logger
    /// The kernel that loaded the plugin.
    let context: HostContext
    /// The service tables the plugin exported from `init`, for kernels adopting it later.
    private let exports = NIOLockedValueBox<[(name: String, major: UInt32, table: SharedPointer<UnsafeRawPointer>, size: Int)]>([])

    init(name: String, context: HostContext) {
        self.name = name
        var logger = context.logger
        logger[metadataKey: "plugin"] = .string(name)
        self.logger = logger
        self.context = context
        // Immortal: plugins keep the pointer for the life of the process.
        _ = Unmanaged.passRetained(self)
    }

    /// The opaque pointer given to the plugin.
    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ pointer: OpaquePointer?) -> PluginHandle? {
        guard let pointer else { return nil }
        return Unmanaged<PluginHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }

    /// `service_export`: records the table in the loading kernel's registry; returns the
    /// refusal when another plugin holds the name and major.
    func export(name service: String, major: UInt32, table: UnsafeRawPointer, size: Int) -> String? {
        let shared = SharedPointer(table)
        if let problem = context.services.export(name: service, major: major, plugin: name, table: shared, size: size) { return problem }
        exports.withLockedValue { $0.append((service, major, shared, size)) }
        return nil
    }

    /// Registers the plugin's exports in another kernel's registry; the first refusal, if any.
    func adoptExports(into registry: ServiceRegistry) -> String? {
        for export in exports.withLockedValue({ $0 }) {
            if let problem = registry.export(name: export.name, major: export.major, plugin: name, table: export.table, size: export.size) {
                return problem
            }
        }
        return nil
    }

    /// Forgets the exports (the plugin was shut down or its `init` failed).
    func dropExports() {
        exports.withLockedValue { $0.removeAll() }
        context.services.removeAll(plugin: name)
    }
}

/// Which descriptor fields a plugin compiled against an older minor version actually has.
enum PluginDescriptorLayout {
    /// `sizeof(mb_plugin_descriptor)` of ABI 1.0 (112 on LP64): the fields up to `shutdown`.
    static let sizeOfABI10 = MemoryLayout<mb_plugin_descriptor>.offset(of: \mb_plugin_descriptor.shutdown)! + MemoryLayout<UnsafeRawPointer>.size

    /// Whether the field at `keyPath` lies within the plugin's declared `struct_size`.
    static func has<T>(_ keyPath: KeyPath<mb_plugin_descriptor, T>, in descriptor: UnsafePointer<mb_plugin_descriptor>) -> Bool {
        guard let offset = MemoryLayout<mb_plugin_descriptor>.offset(of: keyPath) else { return false }
        return offset + MemoryLayout<T>.size <= descriptor.pointee.struct_size
    }
}
