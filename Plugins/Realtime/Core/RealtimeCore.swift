/// Realtime's domain, importable by the plugin and its tests without the plugin's entry point.
public enum RealtimeCore {
    /// The protocol versions clients send as `vsn`.
    public static let protocolVersions = ["1.0.0", "2.0.0"]
}
