import Foundation
import MeltyPluginSDK

/// The `/intelligence/v1` routes of one portal.
struct IntelligenceRoutes: Sendable {
    let context: IntelligencePortal

    /// DDL of this part's tables in the `intelligence` schema (idempotent).
    static let schema = "SELECT 1"

    func handle(_ request: PluginRequest) async -> PluginResponse {
        .error(status: 404, code: "not_found", message: "no route \(request.method) /intelligence/v1\(request.path)")
    }
}
