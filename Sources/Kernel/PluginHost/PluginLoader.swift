import Foundation
import Logging
import MeltyABIBytes
import MeltyBuildSignature
import MeltyPluginABI

/// Why a plugin was refused; `description` is the one log line a user sees.
public struct PluginLoadError: Error, CustomStringConvertible, Sendable {
    /// The name from the config (the descriptor may be unreadable).
    public var plugin: String
    /// The library path.
    public var path: String
    /// What is wrong and what to do.
    public var reason: String

    /// `plugin "x" (path): reason`.
    public var description: String { "plugin \"\(plugin)\" (\(path)) not loaded: \(reason)" }
}

/// Opens plugin libraries and checks their descriptors, the way PostgreSQL checks its
/// magic block: the first mismatching field is reported with the expected and found values.
struct PluginLoader {
    /// The kernel loading the plugins: its host table, handles and blocking pool.
    let context: HostContext

    /// A checked descriptor that has not been initialised: what `meltybase <plugin> --help`
    /// needs, and the first half of ``load(_:takenNames:takenPrefixes:)``.
    struct Inspected {
        let descriptor: UnsafePointer<mb_plugin_descriptor>
        let extensions: PluginExtensions
    }

    /// Opens one library and checks its descriptor, without calling `init`.
    static func inspect(_ config: PluginConfig, takenNames: Set<String> = []) throws -> Inspected {
        func refuse(_ reason: String) -> PluginLoadError {
            PluginLoadError(plugin: config.name, path: config.path, reason: reason)
        }
        guard FileManager.default.fileExists(atPath: config.path) else {
            throw refuse("file not found; build it (scripts/run does) or fix 'path' in [plugins.\(config.name)]")
        }
        guard let library = dlopen(config.path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            throw refuse("dlopen failed: \(String(cString: dlerror()))")
        }
        // Never dlclose: images containing Swift cannot be unloaded safely.
        guard let symbol = dlsym(library, MB_PLUGIN_ENTRY_SYMBOL) else {
            throw refuse("missing entry symbol \(MB_PLUGIN_ENTRY_SYMBOL); export `const mb_plugin_descriptor *\(MB_PLUGIN_ENTRY_SYMBOL)(void)`")
        }
        let entry = unsafeBitCast(symbol, to: mb_plugin_entry_fn.self)
        guard let descriptor = entry() else { throw refuse("\(MB_PLUGIN_ENTRY_SYMBOL)() returned NULL") }
        try check(descriptor, config: config, takenNames: takenNames, refuse: refuse)
        do {
            return Inspected(descriptor: descriptor, extensions: try PluginExtensions.read(descriptor, libraryPath: config.path))
        } catch {
            throw refuse(error.reason)
        }
    }

    /// Loads, checks and initialises one plugin. `takenNames` and `takenPrefixes` (prefix to
    /// plugin) belong to plugins already loaded; clashes are refused before `init` runs.
    func load(_ config: PluginConfig, takenNames: Set<String>, takenPrefixes: [String: String]) async throws -> LoadedPlugin {
        func refuse(_ reason: String) -> PluginLoadError {
            PluginLoadError(plugin: config.name, path: config.path, reason: reason)
        }
        let inspected = try Self.inspect(config, takenNames: takenNames)
        let descriptor = inspected.descriptor
        let name = String(cString: descriptor.pointee.name)
        let prefixes = [String(cString: descriptor.pointee.route_prefix)] + LoadedPlugin.extraPrefixes(of: descriptor)
        for prefix in prefixes {
            if let owner = takenPrefixes[prefix] {
                throw refuse("route prefix \"\(prefix)\" is already served by plugin \"\(owner)\"")
            }
            if prefixes.filter({ $0 == prefix }).count > 1 { throw refuse("route prefix \"\(prefix)\" is listed twice") }
            if !PluginLoader.isValidName(prefix) {
                throw refuse("descriptor field extra_route_prefixes: expected 1 to 63 characters of a-z, 0-9, '-' and '_', found \"\(prefix)\"")
            }
        }
        let handle = PluginHandle(name: name, context: context)
        let plugin = LoadedPlugin(descriptor: descriptor, path: config.path, handle: handle, extensions: inspected.extensions)
        let table = context.table
        let configJSON = config.configJSON
        // init may block (open files, connect): it runs on the kernel's blocking pool.
        let (status, text) = try await context.runBlocking { () -> (mb_status, String) in
            let message = HostErrorBuffer()
            let status = configJSON.withHostBytes { json in
                plugin.descriptor.pointee.`init`!(table.pointer, handle.opaque, json, message.buffer)
            }
            return (status, message.text)
        }
        guard status == MB_OK else {
            handle.dropExports()
            throw refuse("init failed (\(StatusName.of(status))): \(text.isEmpty ? "no message given" : text)")
        }
        return plugin
    }

    private static func check(_ descriptor: UnsafePointer<mb_plugin_descriptor>, config: PluginConfig, takenNames: Set<String>, refuse: (String) -> PluginLoadError) throws {
        let value = descriptor.pointee
        // struct_size first: it says which later fields may be read at all. The smallest
        // descriptor a plugin can have is ABI 1.0's, which ends with `shutdown`.
        guard value.struct_size >= PluginDescriptorLayout.sizeOfABI10 else {
            throw refuse(
                "descriptor field struct_size: expected at least \(PluginDescriptorLayout.sizeOfABI10) (sizeof(mb_plugin_descriptor) of ABI 1.0), found \(value.struct_size); set it to sizeof(mb_plugin_descriptor)"
            )
        }
        guard value.abi_major == UInt32(MB_ABI_MAJOR) else {
            throw refuse("descriptor field abi_major: expected \(MB_ABI_MAJOR), found \(value.abi_major); rebuild the plugin against this kernel's meltybase_plugin.h")
        }
        guard let signaturePointer = value.build_signature else {
            throw refuse("descriptor field build_signature: expected \"\(BuildSignature.c)\" or \"\(BuildSignature.swift)\", found NULL")
        }
        let signature = String(cString: signaturePointer)
        if signature.hasPrefix("swift-") {
            guard signature == BuildSignature.swift else {
                throw refuse(
                    "descriptor field build_signature: expected \"\(BuildSignature.swift)\", found \"\(signature)\"; Swift plugins must be built by the same Swift toolchain as the kernel (Swift's ABI is not stable on Linux)"
                )
            }
        } else if signature != BuildSignature.c {
            throw refuse("descriptor field build_signature: expected \"\(BuildSignature.c)\", found \"\(signature)\"")
        }
        for (field, pointer) in [("name", value.name), ("version", value.version), ("route_prefix", value.route_prefix)] {
            guard let pointer else { throw refuse("descriptor field \(field): expected a string, found NULL") }
            let text = String(cString: pointer)
            if field != "version" && !PluginLoader.isValidName(text) {
                throw refuse("descriptor field \(field): expected 1 to 63 characters of a-z, 0-9, '-' and '_', found \"\(text)\"")
            }
        }
        let name = String(cString: value.name)
        if takenNames.contains(name) {
            throw refuse("name \"\(name)\" is already taken by another loaded plugin; plugin names must be unique")
        }
        guard name == config.name else {
            throw refuse("descriptor field name: expected \"\(config.name)\" (the [plugins.\(config.name)] table), found \"\(name)\"")
        }
        let required: [(String, Bool)] = [
            ("init", value.`init` != nil), ("instance_create", value.instance_create != nil),
            ("instance_destroy", value.instance_destroy != nil), ("handle_request", value.handle_request != nil),
        ]
        for (field, present) in required where !present {
            throw refuse("descriptor field \(field): required callback is NULL")
        }
    }

    static func isValidName(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 63 && !text.hasPrefix("-") && !text.hasPrefix("_")
            && text.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }
    }
}

/// Human-readable names of `mb_status` values, for log lines.
enum StatusName {
    static func of(_ status: mb_status) -> String {
        switch status {
        case MB_OK: "MB_OK"
        case MB_ERR_INVALID_ARGUMENT: "MB_ERR_INVALID_ARGUMENT"
        case MB_ERR_NOT_FOUND: "MB_ERR_NOT_FOUND"
        case MB_ERR_REFUSED: "MB_ERR_REFUSED"
        case MB_ERR_UNAVAILABLE: "MB_ERR_UNAVAILABLE"
        case MB_ERR_INTERNAL: "MB_ERR_INTERNAL"
        case MB_ERR_UNSUPPORTED: "MB_ERR_UNSUPPORTED"
        case MB_ERR_ALREADY_EXISTS: "MB_ERR_ALREADY_EXISTS"
        default: "status \(status.rawValue)"
        }
    }
}
