import Hummingbird

/// `GET /v1/hub/plugins` (admin, AAL1): the plugin report of `/v1/system/plugins` (loaded
/// plugins with their health, pages and commands, refusals, per-portal status) for a
/// signed-in admin from anywhere: the Studio's overview.
struct HubPluginsRoute: Sendable {
    let identity: AdminIdentity
    let plugins: PluginHost
    let portals: PortalRegistry
    let rateLimiter: RateLimiter

    func register(on router: some RouterMethods<KernelRequestContext>) {
        router.get("/v1/hub/plugins") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                var response = SystemRoutes.json(PluginReport(plugins: plugins, portals: portals, rateLimiter: rateLimiter, health: await plugins.health()).json)
                response.headers[.cacheControl] = "no-store"
                return response
            }
        }
    }
}
