import Crypto
import Foundation
import NIOCore

/// A folder of static Studio files read into memory once, with one version for the set:
/// the kernel's own Studio (``StudioAssets``) and each plugin's Studio folder (ABI 1.5,
/// ``PluginStudio``).
///
/// Reading is bounded (file count, total bytes), skips dotfiles and dot-folders, and
/// refuses symbolic links that resolve outside the folder, so a plugin's folder cannot
/// make the kernel serve arbitrary files of the machine.
struct StudioFileSet: Sendable {
    /// One file, ready to send.
    struct File: Sendable {
        let bytes: ByteBuffer
        let contentType: String
    }

    /// How much a folder may hold.
    struct Limits: Sendable {
        var maxFiles: Int
        var maxTotalBytes: Int

        /// The kernel's own Studio: generous, it ships with the binary.
        static let kernel = Limits(maxFiles: 4_096, maxTotalBytes: 64 * 1024 * 1024)
        /// A plugin's Studio folder (documented in meltybase_plugin.h, studio_directory).
        static let plugin = Limits(maxFiles: 256, maxTotalBytes: 8 * 1024 * 1024)
    }

    /// Why a folder could not be read; `description` says what and where.
    struct ReadError: Error, CustomStringConvertible {
        let description: String
    }

    /// Version of this set of files (16 hex digits of a SHA-256 over every path and its bytes).
    let version: String
    /// Files by path relative to the folder (`js/app.js`).
    let files: [String: File]

    /// Reads every regular file below `directory`. Throws when the folder is missing, a
    /// limit is passed or a symbolic link leads outside it.
    init(directory: String, limits: Limits) throws(ReadError) {
        guard let rootPath = Self.realPath(directory) else {
            throw ReadError(description: "folder \(directory) does not exist")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: rootPath, isDirectory: &isDirectory), isDirectory.boolValue,
            let enumerator = FileManager.default.enumerator(atPath: rootPath)
        else {
            throw ReadError(description: "folder \(directory) does not exist or cannot be listed")
        }
        let prefix = rootPath.hasSuffix("/") ? rootPath : rootPath + "/"
        var contents: [String: [UInt8]] = [:]
        var total = 0
        while let next = enumerator.nextObject() as? String {
            let relative = next
            if relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }) {
                enumerator.skipDescendants()
                continue
            }
            // Symbolic links are followed only when they stay inside the folder.
            let path = prefix + relative
            guard let resolved = Self.realPath(path) else { continue }
            guard resolved.hasPrefix(prefix) else {
                throw ReadError(description: "\(relative) in \(directory) is a symbolic link to \(resolved), outside the folder")
            }
            var entryIsDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: resolved, isDirectory: &entryIsDirectory), !entryIsDirectory.boolValue else { continue }
            guard contents.count < limits.maxFiles else {
                throw ReadError(description: "folder \(directory) holds more than \(limits.maxFiles) files")
            }
            guard let data = FileManager.default.contents(atPath: resolved) else {
                throw ReadError(description: "\(relative) in \(directory) cannot be read")
            }
            total += data.count
            guard total <= limits.maxTotalBytes else {
                throw ReadError(description: "folder \(directory) holds more than \(limits.maxTotalBytes) bytes")
            }
            contents[relative] = Array(data)
        }
        var hasher = SHA256()
        for (path, bytes) in contents.sorted(by: { $0.key < $1.key }) {
            hasher.update(data: Array(path.utf8) + [0])
            hasher.update(data: bytes)
        }
        version = hasher.finalize().prefix(8).map { String(format: "%02x", $0) }.joined()
        files = Dictionary(
            uniqueKeysWithValues: contents.map { path, bytes in
                (path, File(bytes: ByteBuffer(bytes: bytes), contentType: Self.contentType(for: path)))
            })
    }

    /// `realpath(3)`: the absolute path with every symbolic link resolved; nil when it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
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
