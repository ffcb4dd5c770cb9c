import AgentCore
import MeltyJSON
import MeltyPluginSDK

/// Who calls the agents' routes and what they may do: signed-in users start and see their
/// own runs (which act under their role and claims); `service_role` and aal2 admins see every
/// run and decide SQL writes. Anonymous callers are refused.
struct AgentCallerAccess: Sendable {
    /// The role and claims runs started by this caller act with.
    let caller: AgentCaller
    /// True for `service_role` and aal2 admins.
    let seesAll: Bool
    /// How the caller is named in reasons and approvals (`user:<id>`, `service_role`, `admin:<id>`).
    let name: String

    /// The access of `credential`, or the refusal to answer.
    static func resolve(_ credential: PluginCredential) -> Result<AgentCallerAccess, AgentRefusal> {
        switch credential.kind {
        case .none:
            return .failure(
                AgentRefusal(401, "unauthenticated", "agents need a signed-in user's token, a service_role key or an aal2 admin", hint: "send Authorization: Bearer <token>"))
        case .invalid:
            return .failure(AgentRefusal(401, "invalid_token", credential.reason ?? "the token does not verify for this portal"))
        case .plugin:
            return .failure(AgentRefusal(403, "forbidden", "a plugin's own credential cannot start or read agent runs"))
        case .admin:
            guard credential.isAdminAtAAL2 else {
                return .failure(AgentRefusal(403, "aal2_required", "an admin reaches agents only at aal2", hint: "complete multi-factor sign-in"))
            }
            let subject = "admin:" + (credential.subject ?? "")
            let claims = "{\"role\":\"service_role\",\"sub\":\(JSONStringWriter.quoted(credential.subject ?? "")),\"meltybase_admin\":true}"
            return .success(AgentCallerAccess(caller: AgentCaller(role: "service_role", subject: subject, claimsJSON: claims), seesAll: true, name: subject))
        case .portal:
            switch credential.role {
            case "service_role":
                return .success(
                    AgentCallerAccess(
                        caller: AgentCaller(role: "service_role", subject: nil, claimsJSON: String(decoding: credential.claimsJSON, as: UTF8.self)), seesAll: true,
                        name: "service_role"))
            case "authenticated":
                guard let subject = credential.subject, !subject.isEmpty else {
                    return .failure(AgentRefusal(401, "invalid_token", "the token has no subject (sub) to own runs"))
                }
                // Anonymous sign-ins are `authenticated` too, but anyone can make one: no model spend for them.
                if JSONValue.object(json: credential.claimsJSON)?["is_anonymous"] == .bool(true) {
                    return .failure(AgentRefusal(403, "anonymous_user", "anonymous users may not run agents", hint: "sign up or sign in with an email address"))
                }
                return .success(
                    AgentCallerAccess(
                        caller: AgentCaller(role: "authenticated", subject: subject, claimsJSON: String(decoding: credential.claimsJSON, as: UTF8.self)),
                        seesAll: false, name: "user:" + subject))
            default:
                return .failure(
                    AgentRefusal(
                        403, "forbidden", "the role \"\(credential.role ?? "anon")\" may not use agents",
                        hint: "sign in (role authenticated), or use the service_role key"))
            }
        }
    }
}
