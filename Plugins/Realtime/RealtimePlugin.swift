import MeltyPluginSDK

/// The Realtime plugin: Supabase Realtime's WebSocket protocol at
/// `/p/<portal>/realtime/v1/websocket` (broadcast, presence, Postgres changes checked by
/// row-level security), fanned out across kernels through Redis. See `docs/realtime.md`.
public final class RealtimePlugin: PortalPlugin {
    /// Name, version and route prefix.
    public static let description = PluginDescription(name: "realtime", version: "0.1.0", routePrefix: "realtime")

    let portal: Portal

    /// Creates the portal's instance.
    public init(portal: Portal, config: PluginConfig) throws {
        self.portal = portal
    }

    /// Answers HTTP requests below `/p/<portal>/realtime`.
    public func handle(_ request: PluginRequest) async -> PluginResponse {
        .error(status: 404, code: "not_found", message: "no realtime route \(request.method) \(request.path)")
    }
}

/// The C entry point the kernel looks up.
@_cdecl("meltybase_plugin_entry")
public func meltybasePluginEntry() -> UnsafeRawPointer { PluginExport.descriptor(for: RealtimePlugin.self) }
