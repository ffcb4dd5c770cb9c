import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The admin-facing API, each part in the folder of its URL prefix: `/v1/admin/*`
/// (``AdminRoutes``: sign-in, tokens, MFA, admin users), `/v1/hub/portals` (``HubPortalRoutes``),
/// `/v1/audit` (``AuditRoute``) and `/v1/system/license` (``LicenseRoute``). Handlers are
/// thin: they parse, call ``AdminIdentity`` to authorize, call the domain, and render
/// (``AdminHTTP``).
struct AdminAPIRoutes: Sendable {
    let identity: AdminIdentity
    let portals: PortalStore
    let database: SystemDatabase
    let keysDirectory: String
    let licensePublicKey: String?
    /// Mints the API keys shown once when a portal is created.
    var portalKeys: PortalKeys? = nil

    func register(on router: some RouterMethods<KernelRequestContext>) {
        AdminRoutes(identity: identity).register(on: router)
        HubPortalRoutes(identity: identity, store: portals, keys: portalKeys).register(on: router)
        AuditRoute(identity: identity, database: database, keysDirectory: keysDirectory).register(on: router)
        LicenseRoute(identity: identity, database: database, publicKey: licensePublicKey).register(on: router)
    }
}
