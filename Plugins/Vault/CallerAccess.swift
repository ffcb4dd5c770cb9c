import MeltyPluginSDK

/// Who may do what with a portal's secrets, decided from the credential the kernel
/// verified (`request.credential`):
///
/// | caller | metadata (list, get, versions) | write, delete | value |
/// |---|---|---|---|
/// | portal key with role `service_role` | yes | yes | yes |
/// | kernel admin at `aal2` | yes | yes | yes |
/// | kernel admin at `aal1` | yes | 403 `aal2_required` | 403 `aal2_required` |
/// | portal `anon` / `authenticated` | 403 `service_role_required` | 403 | 403 |
/// | none | 401 `credential_required` | 401 | 401 |
/// | invalid (bad signature, expired, another portal's key) | 401 `invalid_credential` | 401 | 401 |
/// | another plugin's own work (`vault.v1` only, kind `plugin`) | yes | 403 | yes, audited as `plugin:<name>` with its grant |
struct CallerAccess {
    /// What the route needs.
    enum Need { case metadata, write, value }

    /// Audit and history name of the caller: `service_role` or `admin:<subject>`.
    let actor: String

    /// The caller's access for `need`, or the refusal to send.
    static func check(_ request: PluginRequest, need: Need) -> Result<CallerAccess, RefusalResponse> {
        check(request.credential, need: need)
    }

    /// The same rules for a credential (an HTTP request's, or the `caller` a `vault.v1` call forwards).
    static func check(_ credential: PluginCredential, need: Need) -> Result<CallerAccess, RefusalResponse> {
        switch credential.kind {
        case .portal:
            guard credential.role == "service_role" else {
                return .failure(
                    RefusalResponse(
                        .error(
                            status: 403, code: "service_role_required",
                            message: "the vault answers only the portal's service_role key or a kernel admin; this key has role \(credential.role ?? "none")",
                            hint: "send Authorization: Bearer <service_role key>; never ship that key to browsers")))
            }
            return .success(CallerAccess(actor: "service_role"))
        case .admin:
            let actor = "admin:\(credential.subject ?? "unknown")"
            if need != .metadata, credential.aal != "aal2" {
                return .failure(
                    RefusalResponse(
                        .error(
                            status: 403, code: "aal2_required",
                            message: need == .value ? "reading a secret value needs an admin token at aal2" : "changing secrets needs an admin token at aal2",
                            hint: "step up with POST /v1/admin/mfa/challenge")))
            }
            return .success(CallerAccess(actor: actor))
        case .plugin:
            // Plugins share the kernel's process, so this is trust by contract, not proof: a
            // plugin reading for its own work (Edge starting a worker of a function whose
            // deployer listed the secret) is audited under its name and grant; it never writes.
            guard need != .write else {
                return .failure(
                    RefusalResponse(
                        .error(
                            status: 403, code: "service_role_required", message: "plugins may read secrets through vault.v1 but not change them",
                            hint: "change secrets with the portal's service_role key or as an admin")))
            }
            return .success(CallerAccess(actor: "\(credential.subject ?? "plugin:unknown") (\(credential.reason ?? "no grant given"))"))
        case .invalid:
            return .failure(
                RefusalResponse(
                    .error(
                        status: 401, code: "invalid_credential",
                        message: "the credential was refused: \(credential.reason ?? "it does not verify")",
                        hint: "use a key issued for this portal, or a current admin token")))
        default:
            return .failure(
                RefusalResponse(
                    .error(
                        status: 401, code: "credential_required",
                        message: "the vault needs a credential",
                        hint: "send Authorization: Bearer <service_role key> (or an admin token)")))
        }
    }
}

/// A refusal as an `Error`, so `Result` can carry it.
struct RefusalResponse: Error {
    let response: PluginResponse
    init(_ response: PluginResponse) { self.response = response }
}
