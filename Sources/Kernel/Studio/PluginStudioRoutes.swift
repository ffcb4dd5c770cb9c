import Foundation
import Hummingbird
import NIOCore

/// The plugins' Studio files (ABI 1.5): `/dashboard/plugins/<plugin>/assets/<version>/<file>`
/// answers a file of the plugin's Studio folder as the kernel read it at load, with the
/// Studio's security headers and a year of caching (the version changes with the files).
/// Every other path below `/dashboard/plugins/` is a page and answers the Studio's
/// `index.html` (``StudioRoutes``), whose shell imports the page's module.
enum PluginStudioRoutes {
    /// Where plugin pages and their assets live.
    static let prefix = "/dashboard/plugins/"

    /// Whether `path` addresses a plugin asset (rather than a page).
    static func isAsset(_ path: String) -> Bool {
        guard path.hasPrefix(prefix) else { return false }
        let segments = path.dropFirst(prefix.count).split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        return segments.count == 3 && segments[1] == "assets"
    }

    /// The file at `path` (an ``isAsset(_:)`` path) from `plugins`, or 404.
    static func answer(_ path: String, plugins: PluginHost?) throws -> Response {
        let rest = path.dropFirst(prefix.count).split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
        guard rest.count == 4, let plugin = plugins?.plugin(named: String(rest[0])), let studio = plugin.extensions.studio,
            rest[2] == studio.files.version, let file = studio.files.files[String(rest[3])]
        else {
            throw GatewayError(
                status: 404, code: "asset_not_found", message: "no plugin Studio file at \(path)",
                hint: "plugin assets are addressed by the version the page list (/v1/hub/studio/pages) gives; reload /dashboard")
        }
        return Response(
            status: .ok, headers: StudioRoutes.securityHeaders([.contentType: file.contentType, .cacheControl: StudioRoutes.assetCacheControl]),
            body: .init(byteBuffer: file.bytes))
    }
}
