import Foundation

/// Kernel-side identity of one portal, handed to plugins as `mb_host_portal *`.
///
/// The handle lives as long as the portal exists in this process; instances of plugins
/// never outlive it because they are destroyed before the portal is dropped.
final class PortalHandle: Sendable {
    /// Portal name.
    let name: String
    /// UTF-8 copy of the name with a stable address, for `portal_name`.
    var nameBytes: UnsafeMutableBufferPointer<UInt8> { sharedName.pointer }
    private let sharedName: SharedPointer<UnsafeMutableBufferPointer<UInt8>>
    /// The serving kernel's host state (pending requests, services, audit, conninfo, pool).
    let context: HostContext
    /// Finds the live instance of a plugin for this portal (nil when not enabled).
    let instanceLookup: @Sendable (String) -> PluginInstance?
    /// The serving kernel's portal keys, for `portal_jwt_sign`.
    let keys: PortalKeys?
    /// The serving kernel's audit log, for `audit` calls naming this portal (a process may
    /// run several kernels, each on its own system database).
    let audit: (any AuditSink)?
    /// The serving kernel's egress policy, for `http_fetch` calls naming this portal.
    let egress: EgressPolicy
    /// The portal's usage meter (nil with `[metering] enabled = false`).
    let usage: PortalUsage?

    init(
        name: String, context: HostContext, keys: PortalKeys? = nil, audit: (any AuditSink)? = nil, egress: EgressPolicy = EgressPolicy(),
        usage: PortalUsage? = nil, instanceLookup: @escaping @Sendable (String) -> PluginInstance?
    ) {
        self.name = name
        self.context = context
        self.egress = egress
        self.usage = usage
        self.keys = keys
        self.audit = audit
        self.instanceLookup = instanceLookup
        let bytes = Array(name.utf8)
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, bytes.count))
        _ = buffer.initialize(from: bytes)
        sharedName = SharedPointer(UnsafeMutableBufferPointer(rebasing: buffer[0..<bytes.count]))
    }

    deinit { sharedName.pointer.deallocate() }

    /// The opaque pointer given to plugins (unretained: the registry keeps the handle alive).
    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ pointer: OpaquePointer?) -> PortalHandle? {
        guard let pointer else { return nil }
        return Unmanaged<PortalHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
