import Foundation
import MeltyPluginSDK
import MeltyPostgres

/// One portal's running agents; closed with the portal (runs pause and resume later).
final class PortalAgents: Sendable {
    init(host: PluginHostServices, portal: Portal, owner: PostgresPool, settings: AgentSettings) {}

    /// Stops the runs' tasks (their state stays in Postgres).
    func close() {}
}
