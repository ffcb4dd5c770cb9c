import HTTPTypes
import NIOCore
import Foundation
import Hummingbird
import NIOConcurrencyHelpers
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
    /// The admin routes (`/v1/admin`, `/v1/hub`, `/v1/audit`, `/v1/system/license`).
    var hub: HubRoutes? = nil
    /// License checks for the setup wizard (`/v1/system/license/verify`, `.../evaluation`).
    var licenseChecks: LicenseCheckRoutes? = nil
    /// The Studio (`/`, `/dashboard`).
    var studio: StudioRoutes? = nil
    /// This kernel's `body_limit_bytes` (the static on the context is shared by every kernel in a process).
    var bodyLimit: Int = KernelRequestContext.defaultBodyLimit

    func register(on router: some RouterMethods<KernelRequestContext>) {
        hub?.register(on: router)
        licenseChecks?.register(on: router)
        studio?.register(on: router)
        if let identity = hub?.identity {
            StudioPagesRoute(identity: identity, plugins: plugins, portals: portals).register(on: router)
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
                return Response(status: .ok, headers: [.contentType: "text/plain"],
                                body: .init(byteBuffer: body.readableBytes == 0 ? ByteBuffer(string: "echo") : body))
            }
        }
        router.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(16 * 1024)
            metrics.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("/v1/system/plugins") { _, context in
            // Paths and failures are operator information: loopback clients only, until
            // admin authentication guards the Hub routes.
            guard context.remoteAddress?.isLoopback ?? false else {
                throw GatewayError(status: 403, code: "loopback_only", message: "the plugin report is only served to loopback clients")
            }
            return Self.json(PluginReport(plugins: plugins, portals: portals, rateLimiter: rateLimiter, health: await plugins.health()).json)
        }
        // The same report for a signed-in admin from anywhere (the Studio's overview).
        router.get("/v1/hub/plugins") { request, _ in
            try await HubHTTP.run {
                guard let identity = hub?.identity else {
                    throw GatewayError(status: 404, code: "route_not_found", message: "admin routes are not configured in this kernel")
                }
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                var response = Self.json(PluginReport(plugins: plugins, portals: portals, rateLimiter: rateLimiter, health: await plugins.health()).json)
                response.headers[.cacheControl] = "no-store"
                return response
            }
        }
    }

    static func json(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// Kernel state served by the pulse; `is_initialized` is cached (setup flips it once).
public final class SystemState: Sendable {
    /// The semantic version of this build.
    public static let version = "0.1.0"
    private let initialized: NIOLockedValueBox<Bool>
    private let cachedJSON: NIOLockedValueBox<[UInt8]>

    /// State with the given initialisation flag.
    public init(isInitialized: Bool) {
        initialized = NIOLockedValueBox(isInitialized)
        cachedJSON = NIOLockedValueBox(Self.render(isInitialized))
    }

    /// Whether setup has completed.
    public var isInitialized: Bool {
        get { initialized.withLockedValue { $0 } }
        set {
            initialized.withLockedValue { $0 = newValue }
            cachedJSON.withLockedValue { $0 = Self.render(newValue) }
        }
    }

    /// `{"is_initialized": ..., "version": ..., "pulse": "active"}`, pre-rendered.
    var statusJSON: [UInt8] { cachedJSON.withLockedValue { $0 } }

    private static func render(_ initialized: Bool) -> [UInt8] {
        Array("{\"is_initialized\":\(initialized),\"version\":\"\(version)\",\"pulse\":\"active\"}".utf8)
    }
}

/// What `meltybase plugins list` shows: loaded plugins, refusals, and per-portal status.
struct PluginReport {
    let plugins: PluginHost
    let portals: PortalRegistry
    let rateLimiter: RateLimiter
    /// Each plugin's health by name (ABI 1.5); a plugin missing here shows "not reported".
    var health: [String: PluginHealth] = [:]

    var json: [UInt8] {
        let loaded: [[String: Any]] = plugins.plugins.map { plugin in
            [
                "name": plugin.name, "version": plugin.version, "abi": plugin.abiVersion, "path": plugin.path,
                "prefix": plugin.routePrefix, "prefixes": plugin.routePrefixes, "build_signature": plugin.buildSignature, "status": "loaded",
                "websockets": plugin.acceptsWebSockets,
                "health": ["status": (health[plugin.name] ?? .notReported).status, "message": (health[plugin.name] ?? .notReported).message],
                "pages": plugin.studioPages.map { $0.id }, "commands": plugin.commands.map { $0.name },
                "portals": Dictionary(portals.names.map { ($0, portals.enabledPlugins(of: $0).contains(plugin.name) ? "enabled" : "disabled") },
                                      uniquingKeysWith: { first, _ in first }),
            ]
        }
        let failed: [[String: Any]] = plugins.failures.map { ["name": $0.plugin, "path": $0.path, "status": "failed", "reason": $0.reason] }
        let object: [String: Any] = ["plugins": loaded + failed, "portals": portals.names, "rate_limit_fallback": rateLimiter.isUsingFallback]
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8))
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
