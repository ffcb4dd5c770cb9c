import Foundation
import Hummingbird

/// `/v1/hub/portals`: portal configuration over ``PortalStore``. Listing needs `aal1`;
/// every change needs `aal2` and is audited in the same transaction as the change.
/// Running kernels apply changes at once (the store's `NOTIFY`).
struct HubPortalRoutes: Sendable {
    let identity: AdminIdentity
    let store: PortalStore
    let keys: PortalKeys?

    func register(on router: some RouterMethods<KernelRequestContext>) {
        let identity = identity
        let store = store
        let keys = keys
        router.get("/v1/hub/portals") { request, _ in
            try await HubHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                let portals = try await store.list().map { ["name": $0.name, "plugins": $0.plugins, "created_at": $0.createdAt] as [String: Any] }
                return HubHTTP.json(["portals": portals])
            }
        }
        router.post("/v1/hub/portals") { request, _ in
            try await HubHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                let body = try await HubHTTP.object(request, expected: "{\"name\": \"acme\", \"plugins\": [\"echo-c\"]}")
                let name = try HubHTTP.string(body, "name")
                guard let plugins = (body["plugins"] ?? [String]()) as? [String] else {
                    throw HubHTTP.gatewayError(IdentityError.invalidField("plugins", "plugins must be an array of plugin names"))
                }
                try await store.create(name, plugins: plugins, inTransaction: Self.audit(principal, "hub.portal.create", portal: name, ["plugins": plugins]))
                var result: [String: Any] = ["name": name, "plugins": plugins.sorted()]
                if let note = store.declaredNote(name) { result["note"] = note }
                // Shown once: the kernel keeps only the secret that signs them.
                if let keys {
                    result["anon_key"] = try await keys.issueAPIKey(portal: name, role: "anon")
                    result["service_role_key"] = try await keys.issueAPIKey(portal: name, role: "service_role")
                }
                return HubHTTP.json(result, status: .created)
            }
        }
        router.delete("/v1/hub/portals/:name") { request, context in
            try await HubHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                let name = try context.parameters.require("name")
                try await store.delete(name, inTransaction: Self.audit(principal, "hub.portal.delete", portal: name, [:]))
                var result: [String: Any] = ["name": name, "deleted": true]
                if let note = store.declaredNote(name) { result["note"] = note }
                return HubHTTP.json(result)
            }
        }
        for (method, enabled) in [(HTTPRequest.Method.post, true), (.delete, false)] {
            router.on("/v1/hub/portals/:name/plugins/:plugin", method: method) { request, context in
                try await HubHTTP.run {
                    let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                    let name = try context.parameters.require("name")
                    let plugin = try context.parameters.require("plugin")
                    try await store.set(
                        portal: name, plugin: plugin, enabled: enabled,
                        inTransaction: Self.audit(principal, enabled ? "hub.portal.plugin_enable" : "hub.portal.plugin_disable", portal: name, ["plugin": plugin]))
                    var result: [String: Any] = ["portal": name, "plugin": plugin, "enabled": enabled]
                    if let note = store.declaredNote(name) { result["note"] = note }
                    return HubHTTP.json(result)
                }
            }
        }
    }

    /// Appends `action` by `principal` inside the store's transaction.
    static func audit(_ principal: AdminPrincipal, _ action: String, portal: String, _ details: [String: any Sendable]) -> PortalStore.InTransaction {
        { connection in
            var all: [String: Any] = details
            all["session_id"] = principal.sessionID
            all["aal"] = principal.aal.rawValue
            try await AuditChain.append(on: connection, actor: principal.actor, action: action, target: portal, portal: portal, details: all)
        }
    }
}
