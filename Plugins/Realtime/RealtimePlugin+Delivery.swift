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
        let credential: PluginCredential
        do {
            credential = try await runtime.host.verifyPortalToken(token, portal: portal)
        } catch {
            return .failure("the kernel cannot verify tokens sent in messages: \(error)")
        }
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
        if let mesh = runtime.mesh {
            mesh.publish(
                portal: portal.name, MeshMessage(node: mesh.node, kind: .broadcast, topic: topic, event: body.event, payload: Data(body.payload), isJSON: body.isJSON))
        }
        if isPrivate {
            replayInbox.yield((String(topic.dropFirst("realtime:".count)), body))
        }
    }

    /// Tells the other kernels about presence changes made here.
    func presenceChanged(topic: String, joins: [PresenceTable.Entry], leaves: [PresenceTable.Entry]) {
        guard let mesh = runtime.mesh, !(joins.isEmpty && leaves.isEmpty) else { return }
        mesh.publish(portal: portal.name, MeshMessage(node: mesh.node, kind: .presence, topic: topic, joins: joins, leaves: leaves.map(\.ref)))
    }

    /// Why a `postgres_changes` binding cannot be served, or nil.
    func changeBindingProblem(_ binding: JoinRequest.ChangeBinding) -> String? {
        guard let filter = binding.filter, !filter.isEmpty else { return nil }
        do {
            _ = try delivery.filters.filter(filter)
            return nil
        } catch {
            return "filter \"\(filter.prefix(200))\": \(error)"
        }
    }

    /// Waits until the portal's slot exists (10 s at most), so a change committed after the
    /// join reply is retained and streamed.
    func changesReady() async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        if let mesh = runtime.mesh {
            while !meshLive.isSet {
                guard ContinuousClock.now < deadline else {
                    throw PluginError.unavailable("this kernel's Redis subscription for portal \(portal.name) is not live yet")
                }
                mesh.probe(portal: portal.name)
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        if slotReady.withLock({ $0 }) { return }
        let slot = self.slot
        while ContinuousClock.now < deadline {
            // Streaming here, or a slot whose creation finished (it has a confirmed position:
            // a slot still being created is listed already but misses earlier commits).
            var exists = feed.phase == .streaming
            if !exists {
                exists = try await pool.run { connection in
                    try await connection.query(
                        "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn IS NOT NULL", [slot]
                    ).rows.count == 1
                }
            }
            if exists {
                slotReady.withLock { $0 = true }
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw PluginError.unavailable("the portal's replication slot \(slot) is not ready (change feed: \(feed.phase))")
    }
}
