/// The answers a plugin gives a caller whose credential does not reach a route, the same on
/// every plugin: 401 for no or an unverifiable credential, 403 for one that verifies but does
/// not reach (`aal2_required` for an admin who has not passed the second factor).
extension PluginCredential {
    /// The portal's `service_role` key or a kernel admin at AAL2: who may run free SQL,
    /// change a portal's settings or read its internals.
    public var isServiceRoleOrAAL2Admin: Bool { isPortal(role: "service_role") || isAdminAtAAL2 }

    /// nil for ``isServiceRoleOrAAL2Admin``; otherwise the refusal, naming `what` needs it
    /// (e.g. "the SQL console").
    public func refusalUnlessServiceRoleOrAAL2Admin(_ what: String) -> PluginResponse? {
        if isServiceRoleOrAAL2Admin { return nil }
        if kind == .admin {
            return .error(status: 403, code: "aal2_required", message: "\(what) needs an admin session at AAL2", hint: "verify a second factor, then retry")
        }
        return refusal("\(what) needs the portal's service_role key or an AAL2 admin token")
    }

    /// The refusal for this credential with `message` (why it does not reach): 401
    /// `unauthorized` without a credential, 401 `invalid_token` (with the reason) for one that
    /// does not verify, 403 `aal2_required` for an admin below AAL2, else 403 `forbidden`.
    public func refusal(_ message: String, hint: String? = nil) -> PluginResponse {
        switch kind {
        case .none:
            return .error(status: 401, code: "unauthorized", message: "no credential was sent; \(message)", hint: hint ?? "send the apikey header and a bearer token")
        case .invalid:
            return .error(
                status: 401, code: "invalid_token", message: "the token does not verify here (\(reason ?? "invalid")); \(message)",
                hint: hint ?? "sign in again or use this portal's keys")
        case .admin where !isAdminAtAAL2:
            return .error(status: 403, code: "aal2_required", message: message, hint: hint ?? "verify a second factor, then retry")
        default:
            return .error(status: 403, code: "forbidden", message: message, hint: hint)
        }
    }
}
