import Foundation
import MeltyPluginSDK
import MeltyPostgres

/// One portal's Knowledge Mesh state (loaded indexes); closed with the portal.
final class PortalVectors: Sendable {
    init(host: PluginHostServices, portal: Portal, owner: PostgresPool, settings: VectorSettings) {}

    /// Stops background work and releases the indexes.
    func close() {}
}
