import Foundation
import MeltyJSON

/// What a plugin may sign with `portal_jwt_sign`: user tokens, nothing more.
///
/// Plugins share the kernel's process, but signing is where a naive plugin would become a
/// confused deputy (the example plugin once signed any claims it was sent, a `service_role`
/// key for anyone). So the kernel signs only `role: "authenticated"` tokens with a subject
/// and an expiry at most a day ahead; `anon` and `service_role` keys are issued by the
/// kernel alone (`meltybase portal create`), and an admin token is never a portal JWT.
enum PortalTokenRules {
    /// The longest lifetime a plugin-signed token may have.
    static let maximumLifetimeSeconds: Double = 24 * 3600

    /// Why `claims` may not be signed, or nil when they may.
    static func refusal(for claims: [String: JSONValue], now: Double) -> String? {
        guard case .string(let role)? = claims["role"], role == "authenticated" else {
            return "plugins may sign only tokens with role \"authenticated\" (user sessions); anon and service_role keys are issued by the kernel (meltybase portal create)"
        }
        guard case .string(let subject)? = claims["sub"], !subject.isEmpty else {
            return "a user token needs a non-empty \"sub\" (the user's id)"
        }
        guard let expiry = claims["exp"]?.numberValue, expiry > now, expiry <= now + maximumLifetimeSeconds else {
            return "a user token needs \"exp\" (seconds since 1970) in the future and at most 24 hours ahead"
        }
        return nil
    }
}
