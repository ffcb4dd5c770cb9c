import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Serves the Studio: `/` redirects to `/dashboard`; `/dashboard` and every path below it
/// but `/dashboard/assets/` answer `index.html` (the single-page app routes itself);
/// `/dashboard/assets/<version>/<file>` answer the files; plugins' Studio files are served
/// from `/dashboard/plugins/<plugin>/assets/<version>/<file>` (``PluginStudioRoutes``). Every answer carries a strict
/// Content-Security-Policy (scripts, styles and connections from this origin only, no
/// inline code), `nosniff`, no framing and no referrer.
struct StudioRoutes: Sendable {
    /// The files, or nil when the build has none (then `/dashboard` answers 503).
    let assets: StudioAssets?
    /// The loaded plugins, whose Studio folders are served below `/dashboard/plugins/` (ABI 1.5).
    var plugins: PluginHost? = nil

    /// The policy: nothing from other origins, no inline script or style, no plugins,
    /// no framing, no `<base>` and forms only to this origin.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; "
        + "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    /// `Cache-Control` of versioned assets: a year, never revalidated.
    static let assetCacheControl = "public, max-age=31536000, immutable"
    /// `Cache-Control` of the page: always asked again (it names the asset version).
    static let indexCacheControl = "no-cache"

    func register(on router: some RouterMethods<KernelRequestContext>) {
        let assets = assets
        let plugins = plugins
        router.get("/") { _, _ in
            Response(status: .found, headers: Self.securityHeaders([.location: "/dashboard", .cacheControl: "no-cache"]))
        }
        for path in ["/dashboard", "/dashboard/**"] {
            router.get(RouterPath(path)) { request, _ in
                if PluginStudioRoutes.isAsset(request.uri.path) { return try PluginStudioRoutes.answer(request.uri.path, plugins: plugins) }
                return try Self.answer(request.uri.path, assets: assets)
            }
        }
    }

    static func answer(_ path: String, assets: StudioAssets?) throws -> Response {
        guard let assets else {
            throw GatewayError(
                status: 503, code: "studio_unavailable", message: "this build of the kernel has no Studio files",
                hint: "keep \(StudioAssets.bundleName) beside the meltybase binary (swift build puts it there)")
        }
        guard path.hasPrefix(StudioAssets.assetPrefix) else {
            return Response(
                status: .ok, headers: securityHeaders([.contentType: "text/html; charset=utf-8", .cacheControl: indexCacheControl]),
                body: .init(byteBuffer: assets.index))
        }
        let rest = path.dropFirst(StudioAssets.assetPrefix.count)
        guard let slash = rest.firstIndex(of: "/") else { throw notFound(path) }
        let version = rest[..<slash]
        let file = String(rest[rest.index(after: slash)...])
        guard version == assets.version, let asset = assets.files[file] else { throw notFound(path) }
        return Response(
            status: .ok, headers: securityHeaders([.contentType: asset.contentType, .cacheControl: assetCacheControl]),
            body: .init(byteBuffer: asset.bytes))
    }

    static func notFound(_ path: String) -> GatewayError {
        GatewayError(
            status: 404, code: "asset_not_found", message: "no Studio file at \(path)",
            hint: "assets are addressed by the version in /dashboard's page; reload /dashboard")
    }

    /// `fields` plus the security headers every Studio answer carries.
    static func securityHeaders(_ fields: HTTPFields) -> HTTPFields {
        var headers = fields
        headers[.contentSecurityPolicy] = contentSecurityPolicy
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        headers[HTTPField.Name("Cross-Origin-Opener-Policy")!] = "same-origin"
        headers[HTTPField.Name("Cross-Origin-Resource-Policy")!] = "same-origin"
        headers[HTTPField.Name("Permissions-Policy")!] = "camera=(), microphone=(), geolocation=(), payment=()"
        return headers
    }
}
