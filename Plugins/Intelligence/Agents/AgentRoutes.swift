import Foundation
import MeltyPluginSDK

/// The `/agents/v1` routes of one portal.
struct AgentRoutes: Sendable {
    let context: IntelligencePortal

    /// DDL of this part's tables in the `intelligence` schema (idempotent).
    static let schema = "SELECT 1"

    func handle(_ request: PluginRequest) async -> PluginResponse {
        .error(status: 404, code: "not_found", message: "no route \(request.method) /agents/v1\(request.path)")
    }
}
