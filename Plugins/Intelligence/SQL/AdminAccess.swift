import Foundation
import MeltyPluginSDK

/// Who may use Sentient SQL: the portal's `service_role` key or an admin at AAL2 (the same
/// rule as the SQL console, whose statements it diagnoses).
enum AdminAccess {
    /// Nil when `credential` may proceed; otherwise the refusal to answer.
    static func refusal(_ credential: PluginCredential) -> PluginResponse? {
        credential.refusalUnlessServiceRoleOrAAL2Admin("Sentient SQL")
    }

    /// Who did it, for the audit log.
    static func actor(_ credential: PluginCredential) -> String {
        credential.kind == .admin ? "admin:\(credential.subject ?? "")" : "service_role"
    }
}
