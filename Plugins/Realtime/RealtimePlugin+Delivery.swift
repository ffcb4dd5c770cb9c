import Foundation
import MeltyJSON
import MeltyPluginSDK
import RealtimeCore

/// The outcome of checking a token a client sent.
enum TokenCheck {
    /// A portal token: who it names.
    case success(Caller)
    /// Not acceptable here, with the reason (safe to show).
    case failure(String)
}

extension RealtimePlugin {
    /// Verifies a token sent in a message (`access_token`) with the kernel.
    func verify(token: String) async -> TokenCheck {
        let credential = await runtime.host.verifyPortalToken(token, portal: portal)
        if let caller = Self.caller(credential) {
            if let expiry = caller.expiresAt, expiry <= Date().timeIntervalSince1970 { return .failure("the token has expired") }
            return .success(caller)
        }
        switch credential.kind {
        case .invalid: return .failure(credential.reason ?? "the token does not verify")
        case .admin: return .failure("an admin token cannot join portal channels; use a key or user token of portal \(portal.name)")
        default: return .failure("no token")
        }
    }

    /// Delivers a broadcast on this kernel and to the other kernels; stores private ones for replay.
    func deliver(topic: String, body: BroadcastBody, from connection: UInt64?, isPrivate: Bool) {
        let delivered = hub.broadcast(topic: topic, body: body, from: connection)
        runtime.host.count("broadcast_messages", by: Int64(delivered), portal: portal)
        if isPrivate {
            let policies = self.policies
            let name = String(topic.dropFirst("realtime:".count))
            Task { try? await policies.store(topic: name, body: body) }
        }
    }

    /// Tells the other kernels about presence changes made here.
    func presenceChanged(topic: String, joins: [PresenceTable.Entry], leaves: [PresenceTable.Entry]) {}

    /// Why a `postgres_changes` binding cannot be served, or nil.
    func changeBindingProblem(_ binding: JoinRequest.ChangeBinding) -> String? {
        nil
    }

    /// Waits until the portal's change feed exists, so a change committed after the join
    /// reply is streamed.
    func changesReady() async throws {}
}
