import Foundation
import MeltyPluginSDK

/// Links and one-time codes by email: confirmation, magic link, recovery, invitation,
/// email change; `/verify` redeems them.
extension AuthHandler {
    /// The tables this part keeps in each portal's `auth` schema (idempotent).
    static let emailSchema = ""

    func sendOneTimeCode(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
    }

    func verifyLink(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
    }

    func recover(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
    }

    func resend(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
    }

    func invite(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        try requireServiceRole(request)
        throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
    }

    func generateLink(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        try requireServiceRole(request)
        throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
    }
}
