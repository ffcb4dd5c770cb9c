import Foundation
import Logging
import NIOCore

/// The Studio's static files (HTML, CSS, JavaScript modules), read once at start.
///
/// They ship in the kernel's SwiftPM resource bundle (`MeltyBase_Kernel.resources/Assets`,
/// next to the `meltybase` binary). The whole set gets one version: the first 16 hex
/// digits of a SHA-256 over every path and its bytes. Assets are served under
/// `/dashboard/assets/<version>/`, so they can be cached for a year (a new build has a new
/// version), while `index.html`, which names the version, is never cached.
struct StudioAssets: Sendable {
    /// One file, ready to send.
    typealias Asset = StudioFileSet.File

    /// Version of this set of files (16 hex digits).
    let version: String
    /// Files by path relative to the assets folder (`js/app.js`); `index.html` excluded.
    let files: [String: Asset]
    /// `index.html` with `{{ASSET_BASE}}` replaced by `/dashboard/assets/<version>`.
    let index: ByteBuffer

    /// Where the URL path for assets starts.
    static let assetPrefix = "/dashboard/assets/"
    /// Name of the resource bundle SwiftPM builds for the Kernel target.
    static let bundleName = "MeltyBase_Kernel.resources"

    /// Reads the assets from `directory` (``StudioFileSet``); nil when it holds no `index.html`.
    init?(directory: String) {
        guard let set = try? StudioFileSet(directory: directory, limits: .kernel) else { return nil }
        var files = set.files
        guard let indexFile = files.removeValue(forKey: "index.html") else { return nil }
        version = set.version
        self.files = files
        let indexText = String(buffer: indexFile.bytes)
        index = ByteBuffer(string: indexText.replacingOccurrences(of: "{{ASSET_BASE}}", with: Self.assetPrefix + version))
    }

    /// The assets from the first place that has them: the resource bundle next to the
    /// running executable, then the source tree this kernel was built from (a binary run
    /// straight from `.build`). Nil, with a warning, when neither has them.
    static func load(logger: Logger) -> StudioAssets? {
        for directory in candidateDirectories() {
            if let assets = StudioAssets(directory: directory) { return assets }
        }
        logger.warning(
            "The Studio's files were not found next to the executable (\(bundleName)/Assets); /dashboard answers 503. Keep the resource bundle beside the meltybase binary.")
        return nil
    }

    static func candidateDirectories() -> [String] {
        let executable = KernelConfig.executableDirectory
        let sourceTree = ((#filePath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("Assets")
        return [
            "\(executable)/\(bundleName)/Assets",
            "\(Bundle.main.bundlePath)/\(bundleName)/Assets",
            sourceTree,
        ]
    }

    /// The media type for a file name.
    static func contentType(for path: String) -> String { StudioFileSet.contentType(for: path) }
}
