import Foundation
import MeltyABIBytes
import MeltyPluginABI
import NIOConcurrencyHelpers

/// One plugin's state for one portal (`mb_plugin_instance *`), reference-counted by use.
///
/// Requests and WebSocket connections hold a use; when the plugin is disabled for the
/// portal the instance is retired and destroyed once its last use ends, so
/// `instance_destroy` never races a running callback.
final class PluginInstance: Sendable {
    let plugin: LoadedPlugin
    let portal: PortalHandle
    /// This plugin's request counts for the portal (nil with metering off).
    let traffic: PluginTraffic?
    /// The plugin's `mb_plugin_instance *`, passed back to it untouched.
    var pointer: OpaquePointer? { instance.pointer }
    private let instance: SharedPointer<OpaquePointer?>
    /// Uses by requests and connections (`count`) and by service-binding leases (`leases`).
    private let uses = NIOLockedValueBox<(count: Int, leases: Int, retired: Bool, destroyed: Bool)>((0, 0, false, false))

    /// Whether the plugin takes `cancel_request` (ABI 1.3).
    var acceptsCancellation: Bool { plugin.cancelsRequests }

    /// Tells the plugin the host gave up on `token` (client gone or timed out).
    func cancelRequest(_ token: UInt64) {
        guard plugin.cancelsRequests, let cancel = plugin.descriptor.pointee.cancel_request else { return }
        cancel(pointer, token)
    }

    private init(plugin: LoadedPlugin, portal: PortalHandle, pointer: OpaquePointer?) {
        self.plugin = plugin
        self.portal = portal
        self.traffic = portal.usage?.traffic(for: plugin.name)
        self.instance = SharedPointer(pointer)
    }

    /// Calls the plugin's `instance_create` for `portal` on the kernel's blocking pool;
    /// throws its message on failure.
    static func create(plugin: LoadedPlugin, portal: PortalHandle, configJSON: String) async throws -> PluginInstance {
        let (status, created, text) = try await portal.context.runBlocking { () -> (mb_status, SharedPointer<OpaquePointer?>, String) in
            let message = HostErrorBuffer()
            var created: OpaquePointer?
            let status = portal.name.withHostBytes { name in
                configJSON.withHostBytes { json in
                    var context = mb_host_instance_context(
                        struct_size: MemoryLayout<mb_host_instance_context>.size,
                        portal: portal.opaque, portal_name: name, config_json: json)
                    return plugin.descriptor.pointee.instance_create!(&context, &created, message.buffer)
                }
            }
            return (status, SharedPointer(created), message.text)
        }
        guard status == MB_OK else {
            throw InstanceCreateError(
                description: "plugin \"\(plugin.name)\" stays disabled for portal \"\(portal.name)\": instance_create failed (\(StatusName.of(status))): \(text)")
        }
        return PluginInstance(plugin: plugin, portal: portal, pointer: created.pointer)
    }

    /// Takes a use; false when the instance is retired (treat the plugin as disabled).
    func acquire() -> Bool {
        uses.withLockedValue { state in
            if state.retired { return false }
            state.count += 1
            return true
        }
    }

    /// Seconds a `service_lookup` binding keeps its exporter instance alive (the header promises
    /// the binding for a call started within this time).
    static let serviceBindingLease = 30.0

    /// Takes a use that ends by itself after `seconds`; false when the instance is retired.
    func acquireLease(seconds: Double) -> Bool {
        let taken = uses.withLockedValue { state -> Bool in
            if state.retired { return false }
            state.leases += 1
            return true
        }
        guard taken else { return false }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            let idle = uses.withLockedValue { state -> Bool in
                state.leases -= 1
                return state.retired && state.count == 0 && state.leases == 0
            }
            if idle { destroyLater() }
        }
        return true
    }

    /// Uses held now (requests, connections, service binding leases).
    var useCount: Int { uses.withLockedValue { $0.count + $0.leases } }

    /// Whether `instance_destroy` has run.
    var isDestroyed: Bool { uses.withLockedValue { $0.destroyed } }

    /// Ends a use taken with `acquire`.
    func release() {
        let idle = uses.withLockedValue { state -> Bool in
            state.count -= 1
            return state.retired && state.count == 0 && state.leases == 0
        }
        if idle { destroyLater() }
    }

    /// Marks the instance disabled: no new uses; destroyed a grace period after its last
    /// use ends, so a late `respond` for a timed-out request or a service binding taken
    /// just before never touches freed plugin memory.
    func retire() {
        let idle = uses.withLockedValue { state -> Bool in
            state.retired = true
            return state.count == 0 && state.leases == 0
        }
        if idle { destroyLater() }
    }

    /// Retires the instance and destroys it as soon as its uses end (process shutdown; leases
    /// of service bindings are not waited for: no call starts after shutdown).
    func retireAndDestroy(timeout: Double = 30) async {
        uses.withLockedValue { $0.retired = true }
        let deadline = Date().addingTimeInterval(timeout)
        while uses.withLockedValue({ $0.count }) > 0 && Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            onBlockingPool {
                self.destroyOnce(ignoringLeases: true)
                done.resume()
            }
        }
    }

    /// Seconds between the last use of a retired instance and `instance_destroy`.
    static let destroyGracePeriod = 5.0

    private func destroyLater() {
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.destroyGracePeriod) { [self] in onBlockingPool { self.destroyOnce() } }
    }

    /// Runs `work` (which calls `instance_destroy`) on the kernel's blocking pool; on the
    /// calling thread once the pool has stopped (the kernel is gone), so it never gets lost.
    private func onBlockingPool(_ work: @escaping @Sendable () -> Void) {
        portal.context.blocking.submit { _ in work() }
    }

    private func destroyOnce(ignoringLeases: Bool = false) {
        let destroy = uses.withLockedValue { state -> Bool in
            guard state.retired, state.count == 0, ignoringLeases || state.leases == 0, !state.destroyed else { return false }
            state.destroyed = true
            return true
        }
        if destroy { plugin.descriptor.pointee.instance_destroy!(pointer) }
    }
}

/// A plugin refused to create its instance for a portal.
struct InstanceCreateError: Error, CustomStringConvertible {
    let description: String
}
