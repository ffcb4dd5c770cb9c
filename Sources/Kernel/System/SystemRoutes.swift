import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

/// The kernel's own routes: the system pulse, an echo (the plugin-dispatch benchmark's
/// kernel-native peer), Prometheus metrics, the loaded-plugin report and the OpenAPI
/// description of them all (``KernelOpenAPI``).
struct SystemRoutes: Sendable {
    let state: SystemState
    let plugins: PluginHost
    let portals: PortalRegistry
    let rateLimiter: RateLimiter
    let metrics: PrometheusCollectorRegistry
    let setup: SetupRoute
    /// The admin-facing routes (`/v1/admin`, `/v1/hub`, `/v1/audit`, `/v1/system/license`), each in the folder of its prefix.
    var adminAPI: AdminAPIRoutes? = nil
    /// License checks for the setup wizard (`/v1/system/license/verify`, `.../evaluation`).
    var licenseChecks: LicenseCheckRoutes? = nil
    /// The Studio (`/`, `/dashboard`).
    var studio: StudioRoutes? = nil
    /// This kernel's `body_limit_bytes` (the static on the context is shared by every kernel in a process).
    var bodyLimit: Int = KernelRequestContext.defaultBodyLimit
    /// Usage, quotas and billing (`/v1/hub/usage`, `/v1/hub/quotas`, `/v1/hub/billing`); its
    /// meter's totals are added to `/metrics`.
    var usage: HubUsageRoutes? = nil

    func register(on router: some RouterMethods<KernelRequestContext>) {
        adminAPI?.register(on: router)
        licenseChecks?.register(on: router)
        studio?.register(on: router)
        usage?.register(on: router)
        let meter = usage?.meter
        if let identity = adminAPI?.identity {
            StudioPagesRoute(identity: identity, plugins: plugins, portals: portals).register(on: router)
            HubPluginsRoute(identity: identity, plugins: plugins, portals: portals, rateLimiter: rateLimiter).register(on: router)
        }
        router.get("/v1/system/status") { _, _ in
            Self.json(state.statusJSON)
        }
        let openAPI = KernelOpenAPI.json(version: SystemState.version)
        router.get(RouterPath(KernelOpenAPI.path)) { _, _ in
            var response = Self.json(openAPI)
            response.headers[.cacheControl] = "no-cache"
            return response
        }
        router.post("/v1/system/setup") { request, context in
            try await setup.handle(request, context: context)
        }
        for method in [HTTPRequest.Method.get, .post] {
            router.on("/v1/system/echo", method: method) { request, _ in
                let body = try await request.body.collect(upTo: bodyLimit)
                return Response(
                    status: .ok, headers: [.contentType: "text/plain"],
                    body: .init(byteBuffer: body.readableBytes == 0 ? ByteBuffer(string: "echo") : body))
            }
        }
        router.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(16 * 1024)
            metrics.emit(into: &buffer)
            if let meter { buffer.append(contentsOf: meter.prometheusText().utf8) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("/v1/system/plugins") { _, context in
            // Paths and failures are operator information: loopback clients only, until
            // admin authentication guards the Hub routes.
            guard context.isLoopbackClient else {
                throw GatewayError(status: 403, code: "loopback_only", message: "the plugin report is only served to loopback clients")
            }
            return Self.json(PluginReport(plugins: plugins, portals: portals, rateLimiter: rateLimiter, health: await plugins.health()).json)
        }
    }

    static func json(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

extension SocketAddress {
    /// Whether the address is 127.0.0.0/8, ::1 or a unix socket.
    var isLoopback: Bool {
        switch self {
        case .v4: return ipAddress?.hasPrefix("127.") ?? false
        case .v6: return ipAddress == "::1" || (ipAddress?.hasPrefix("::ffff:127.") ?? false)
        case .unixDomainSocket: return true
        }
    }
}
