import Foundation
import Hummingbird
import MeltyJSON

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
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                let portals = try await store.list().map { PortalSummary(name: $0.name, plugins: $0.plugins, createdAt: $0.createdAt) }
                return AdminHTTP.json(["portals": portals])
            }
        }
        router.post("/v1/hub/portals") { request, _ in
            try await AdminHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                let body = try await AdminHTTP.decode(CreateBody.self, from: request, expected: "{\"name\": \"acme\", \"plugins\": [\"echo-c\"]}")
                let name = body.name
                let plugins: [String]
                switch body.plugins {
                case nil: plugins = []
                case .array(let items)? where items.allSatisfy({ $0.stringValue != nil }): plugins = items.compactMap(\.stringValue)
                default: throw AdminHTTP.gatewayError(IdentityError.invalidField("plugins", "plugins must be an array of plugin names"))
                }
                try await store.create(name, plugins: plugins, inTransaction: Self.audit(principal, "hub.portal.create", portal: name, ["plugins": plugins]))
                var result = Created(name: name, plugins: plugins.sorted(), note: store.declaredNote(name))
                // Shown once: the kernel keeps only the secret that signs them.
                if let keys {
                    result.anonKey = try await keys.issueAPIKey(portal: name, role: "anon")
                    result.serviceRoleKey = try await keys.issueAPIKey(portal: name, role: "service_role")
                }
                return AdminHTTP.json(result, status: .created)
            }
        }
        router.delete("/v1/hub/portals/:name") { request, context in
            try await AdminHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                let name = try context.parameters.require("name")
                try await store.delete(name, inTransaction: Self.audit(principal, "hub.portal.delete", portal: name, [:]))
                return AdminHTTP.json(Deleted(name: name, deleted: true, note: store.declaredNote(name)))
            }
        }
        for (method, enabled) in [(HTTPRequest.Method.post, true), (.delete, false)] {
            router.on("/v1/hub/portals/:name/plugins/:plugin", method: method) { request, context in
                try await AdminHTTP.run {
                    let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                    let name = try context.parameters.require("name")
                    let plugin = try context.parameters.require("plugin")
                    try await store.set(
                        portal: name, plugin: plugin, enabled: enabled,
                        inTransaction: Self.audit(principal, enabled ? "hub.portal.plugin_enable" : "hub.portal.plugin_disable", portal: name, ["plugin": plugin]))
                    return AdminHTTP.json(PluginSwitched(portal: name, plugin: plugin, enabled: enabled, note: store.declaredNote(name)))
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

extension HubPortalRoutes {
    /// `POST /v1/hub/portals`: `{name, plugins?}` (`plugins` checked by the route, so its
    /// message says what it must be).
    struct CreateBody: Decodable {
        var name: String
        var plugins: JSONValue?
    }

    /// A portal in `GET /v1/hub/portals`.
    struct PortalSummary: Encodable {
        var name: String
        var plugins: [String]
        var createdAt: String

        enum CodingKeys: String, CodingKey {
            case name, plugins
            case createdAt = "created_at"
        }
    }

    /// A created portal; `note` (a portal also declared in the TOML) and the keys only when present.
    struct Created: Encodable {
        var name: String
        var plugins: [String]
        var note: String?
        var anonKey: String?
        var serviceRoleKey: String?

        enum CodingKeys: String, CodingKey {
            case name, plugins, note
            case anonKey = "anon_key"
            case serviceRoleKey = "service_role_key"
        }
    }

    /// A deleted portal.
    struct Deleted: Encodable {
        var name: String
        var deleted: Bool
        var note: String?
    }

    /// A plugin switched on or off for a portal.
    struct PluginSwitched: Encodable {
        var portal: String
        var plugin: String
        var enabled: Bool
        var note: String?
    }
}
