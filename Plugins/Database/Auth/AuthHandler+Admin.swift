import Foundation
import MeltyPluginSDK

/// GoTrue's admin API (`/auth/v1/admin/*`) for the service role.
extension AuthHandler {
    /// Routes `/admin/<path>`; `path` excludes `admin`.
    func adminRoute(_ request: PluginRequest, path: [String], body: [String: Any]) async throws -> PluginResponse {
        try requireServiceRole(request)
        throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
    }
}
