import Foundation
import Hummingbird

/// `GET /v1/hub/studio/pages` (admin, AAL1): the Studio pages of the plugins that at least
/// one portal enables, for the Studio's navigation (ABI 1.5 `studio_pages`):
/// `{"pages":[{"plugin","id","title","module","path","portals":[...]}]}` in plugin and page
/// order; `module` is the URL the Studio imports, `path` the page below `/dashboard`.
struct StudioPagesRoute: Sendable {
    let identity: AdminIdentity
    let plugins: PluginHost
    let portals: PortalRegistry

    func register(on router: some RouterMethods<KernelRequestContext>) {
        router.get("/v1/hub/studio/pages") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                return AdminHTTP.json(Listing(pages: pages()))
            }
        }
    }

    /// The answer: `{"pages": [...]}`.
    struct Listing: Encodable {
        var pages: [Page]
    }

    /// One page of one plugin.
    struct Page: Encodable {
        var plugin: String
        var id: String
        var title: String
        var module: String
        var path: String
        var portals: [String]
    }

    /// The listing (without authentication; the route checks it).
    func pages() -> [Page] {
        let portalNames = portals.names
        let enabled = portalNames.map { Set(portals.enabledPlugins(of: $0)) }
        var pages: [Page] = []
        for plugin in plugins.plugins {
            let enabling = zip(portalNames, enabled).filter { $0.1.contains(plugin.name) }.map(\.0)
            guard !enabling.isEmpty else { continue }
            for page in plugin.studioPages {
                guard let module = plugin.moduleURL(of: page) else { continue }
                pages.append(
                    Page(plugin: plugin.name, id: page.id, title: page.title, module: module, path: "plugins/\(plugin.name)/\(page.id)", portals: enabling))
            }
        }
        return pages
    }
}
