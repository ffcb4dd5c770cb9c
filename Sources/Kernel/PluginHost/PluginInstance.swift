import Foundation
import MeltyPluginABI
import NIOConcurrencyHelpers

/// One plugin's state for one portal (`mb_plugin_instance *`), reference-counted by use.
///
/// Requests and WebSocket connections hold a use; when the plugin is disabled for the
/// portal the instance is retired and destroyed once its last use ends, so
/// `instance_destroy` never races a running callback.
final class PluginInstance: @unchecked Sendable {
    let plugin: LoadedPlugin
    let portal: PortalHandle
    let pointer: OpaquePointer?
    private let uses = NIOLockedValueBox<(count: Int, retired: Bool, destroyed: Bool)>((0, false, false))

    private init(plugin: LoadedPlugin, portal: PortalHandle, pointer: OpaquePointer?) {
        self.plugin = plugin
        self.portal = portal
        self.pointer = pointer
    }

    /// Calls the plugin's `instance_create` for `portal`; throws its message on failure.
    static func create(plugin: LoadedPlugin, portal: PortalHandle, configJSON: String) throws -> PluginInstance {
        let message = ErrorBuffer()
        var created: OpaquePointer?
        let status = portal.name.withHostBytes { name in
            configJSON.withHostBytes { json in
                var context = mb_host_instance_context(
                    struct_size: MemoryLayout<mb_host_instance_context>.size,
                    portal: portal.opaque, portal_name: name, config_json: json)
                return plugin.descriptor.pointee.instance_create!(&context, &created, message.buffer)
            }
        }
        guard status == MB_OK else {
            throw PluginLoadError(
                plugin: plugin.name, path: plugin.path,
                reason: "instance_create for portal \"\(portal.name)\" failed (\(StatusName.of(status))): \(message.text)")
        }
        return PluginInstance(plugin: plugin, portal: portal, pointer: created)
    }

    /// Takes a use; false when the instance is retired (treat the plugin as disabled).
    func acquire() -> Bool {
        uses.withLockedValue { state in
            if state.retired { return false }
            state.count += 1
            return true
        }
    }

    /// Ends a use taken with `acquire`.
    func release() {
        let destroy = uses.withLockedValue { state -> Bool in
            state.count -= 1
            return finishIfIdle(&state)
        }
        if destroy { destroyNow() }
    }

    /// Marks the instance disabled; it is destroyed when its last use ends.
    func retire() {
        let destroy = uses.withLockedValue { state -> Bool in
            state.retired = true
            return finishIfIdle(&state)
        }
        if destroy { destroyNow() }
    }

    private func finishIfIdle(_ state: inout (count: Int, retired: Bool, destroyed: Bool)) -> Bool {
        guard state.retired, state.count == 0, !state.destroyed else { return false }
        state.destroyed = true
        return true
    }

    private func destroyNow() {
        plugin.descriptor.pointee.instance_destroy!(pointer)
    }
}
