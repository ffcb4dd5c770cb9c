import IntelligenceVectors
import MeltyPluginSDK

/// Who a Knowledge Mesh request comes from: writes, collection management and the mesh
/// need `service_role` or an AAL2 admin; reads follow the collection's read setting.
struct VectorAccess {
    /// The request whose credential is judged.
    let request: PluginRequest

    /// Whether the caller may write and manage collections.
    var isAdmin: Bool { request.credential.isServiceRoleOrAAL2Admin }

    /// The database role reads are judged by (`service_role` for an AAL2 admin), or nil.
    var readRole: String? {
        if isAdmin { return "service_role" }
        if request.credential.kind == .portal { return request.credential.role }
        return nil
    }

    /// nil when the caller may write, else the 401/403 to answer.
    func refuseUnlessAdmin() -> PluginResponse? {
        if isAdmin { return nil }
        return refusal("this needs the service_role key or an admin signed in with MFA (AAL2)")
    }

    /// nil when the caller may read `collection`, else the 401/403 (a 404 for callers who may
    /// not even know it exists would hide nothing: names are not secret, so 403 says why).
    func refuseUnlessReader(of collection: VectorCollection) -> PluginResponse? {
        if let role = readRole, collection.readAccess.allows(role: role) { return nil }
        return refusal("the collection \"\(collection.name)\" is readable by \(collection.readAccess.rawValue) and above")
    }

    private func refusal(_ message: String) -> PluginResponse {
        request.credential.refusal(message, hint: request.credential.kind == .portal ? "use the service_role key on a server, or change the collection's read setting" : nil)
    }
}
