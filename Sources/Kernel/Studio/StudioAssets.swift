import Crypto
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
    struct Asset: Sendable {
        let bytes: ByteBuffer
        let contentType: String
    }

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

    /// Reads the assets from `directory`; nil when it holds no `index.html`.
    init?(directory: String) {
        let root = URL(fileURLWithPath: directory, isDirectory: true).standardizedFileURL
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return nil }
        var contents: [String: [UInt8]] = [:]
        for case let url as URL in enumerator {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true,
                  let data = FileManager.default.contents(atPath: url.path) else { continue }
            let relative = String(url.standardizedFileURL.path.dropFirst(root.path.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            guard !relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }) else { continue }
            contents[relative] = Array(data)
        }
        guard let indexBytes = contents.removeValue(forKey: "index.html") else { return nil }
        var hasher = SHA256()
        for path in contents.keys.sorted() + ["index.html"] {
            hasher.update(data: Array(path.utf8) + [0])
            hasher.update(data: path == "index.html" ? indexBytes : contents[path]!)
        }
        version = hasher.finalize().prefix(8).map { String(format: "%02x", $0) }.joined()
        files = Dictionary(uniqueKeysWithValues: contents.map { path, bytes in
            (path, Asset(bytes: ByteBuffer(bytes: bytes), contentType: Self.contentType(for: path)))
        })
        let base = Self.assetPrefix + version
        index = ByteBuffer(string: String(decoding: indexBytes, as: UTF8.self).replacingOccurrences(of: "{{ASSET_BASE}}", with: base))
    }

    /// The assets from the first place that has them: the resource bundle next to the
    /// running executable, then the source tree this kernel was built from (a binary run
    /// straight from `.build`). Nil, with a warning, when neither has them.
    static func load(logger: Logger) -> StudioAssets? {
        for directory in candidateDirectories() {
            if let assets = StudioAssets(directory: directory) { return assets }
        }
        logger.warning("The Studio's files were not found next to the executable (\(bundleName)/Assets); /dashboard answers 503. Keep the resource bundle beside the meltybase binary.")
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
    static func contentType(for path: String) -> String {
        switch (path as NSString).pathExtension.lowercased() {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js", "mjs": "text/javascript; charset=utf-8"
        case "json": "application/json"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "ico": "image/x-icon"
        case "woff2": "font/woff2"
        case "txt", "md": "text/plain; charset=utf-8"
        default: "application/octet-stream"
        }
    }
}
