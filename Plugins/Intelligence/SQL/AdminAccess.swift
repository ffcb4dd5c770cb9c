import Foundation
import MeltyPluginSDK

/// Who may use Sentient SQL: the portal's `service_role` key or an admin at AAL2 (the same
/// rule as the SQL console, whose statements it diagnoses).
enum AdminAccess {
    /// Nil when `credential` may proceed; otherwise the refusal to answer.
    static func refusal(_ credential: PluginCredential) -> PluginResponse? {
        if credential.isPortal(role: "service_role") || credential.isAdminAtAAL2 { return nil }
        switch credential.kind {
        case .admin:
            return .error(status: 403, code: "aal2_required", message: "Sentient SQL needs an admin session at AAL2", hint: "verify a second factor, then retry")
        case .portal:
            return .error(status: 403, code: "forbidden", message: "Sentient SQL needs the portal's service_role key or an AAL2 admin token")
        default:
            return .error(
                status: 401, code: "unauthorized", message: "Sentient SQL needs the portal's service_role key or an AAL2 admin token",
                hint: credential.kind == .invalid ? credential.reason : nil)
        }
    }

    /// Who did it, for the audit log.
    static func actor(_ credential: PluginCredential) -> String {
        credential.kind == .admin ? "admin:\(credential.subject ?? "")" : "service_role"
    }
}
