import Foundation
import MeltyJSON

/// A function's code: its files (normalised relative path → bytes) and its manifest, with
/// the entrypoint resolved. Building one validates everything that can be known without
/// Deno: sizes, paths, the entrypoint, and the imports of every module the entrypoint
/// reaches (no `http:`, `https:`, `npm:`, `jsr:`, absolute or bare specifier, nothing that
/// leaves the folder; `node:` is allowed, Deno has those modules built in).
public struct FunctionBundle: Sendable, Equatable {
    /// The most files a bundle holds.
    public static let maxFiles = 500
    /// The most bytes a bundle's files hold together (20 MiB).
    public static let maxBytes = 20 * 1024 * 1024
    /// Extensions of the files that are modules (scanned for imports).
    public static let moduleExtensions: Set<String> = ["ts", "tsx", "mts", "cts", "js", "jsx", "mjs", "cjs"]

    /// The files by normalised relative path (`lib/db.ts`).
    public let files: [String: [UInt8]]
    /// The manifest; its `entrypoint` is always set (resolved from the defaults when not named).
    public let manifest: FunctionManifest
    /// The module the worker loads (relative path).
    public let entrypoint: String

    /// The files' bytes together.
    public var size: Int { files.values.reduce(0) { $0 + $1.count } }

    /// A bundle of `files` (paths are normalised) and `manifest`; throws every problem found.
    public init(files: [String: [UInt8]], manifest: FunctionManifest) throws(EdgeDeployRejection) {
        try self.init(files: files, manifest: manifest, checkImports: true)
    }

    /// `checkImports: false` is for bundles read back from the store (checked when deployed).
    init(files: [String: [UInt8]], manifest: FunctionManifest, checkImports: Bool) throws(EdgeDeployRejection) {
        func refuse(_ message: String, file: String? = nil, hint: String? = nil) -> EdgeDeployRejection {
            EdgeDeployRejection([EdgeDeployError(.invalidBundle, message, file: file, hint: hint)])
        }
        guard files.count <= Self.maxFiles else {
            throw refuse("the bundle has \(files.count) files; the limit is \(Self.maxFiles)", hint: "leave tests, fixtures and dependencies' sources out of the function's folder")
        }
        var normalised: [String: [UInt8]] = [:]
        var total = 0
        for (path, bytes) in files {
            let clean: String
            do {
                clean = try BundlePath.normalize(path)
            } catch {
                throw refuse(error.message)
            }
            guard normalised[clean] == nil else { throw refuse("two files are named \(FunctionName.quoted(clean)) once normalised") }
            total += bytes.count
            guard total <= Self.maxBytes else { throw refuse("the bundle's files hold more than \(Self.maxBytes / 1024 / 1024) MiB") }
            normalised[clean] = bytes
        }
        let named = manifest.entrypoint
        guard let entrypoint = named ?? FunctionManifest.defaultEntrypoints.first(where: { normalised[$0] != nil }) else {
            throw refuse(
                "the bundle has no entrypoint", hint: "add one of " + FunctionManifest.defaultEntrypoints.joined(separator: ", ") + " or name the entrypoint in the manifest")
        }
        guard normalised[entrypoint] != nil else {
            throw refuse("the entrypoint \(FunctionName.quoted(entrypoint)) is not among the bundle's files", file: FunctionManifest.fileName)
        }
        var resolved = manifest
        resolved.entrypoint = entrypoint
        self.files = normalised
        self.manifest = resolved
        self.entrypoint = entrypoint
        if checkImports { try checkModuleGraph() }
    }

    /// Follows the static imports from the entrypoint and refuses what Deno could only fetch
    /// from the network or what leaves the bundle.
    private func checkModuleGraph() throws(EdgeDeployRejection) {
        var problems: [EdgeDeployError] = []
        var queue = [entrypoint]
        var seen: Set<String> = [entrypoint]
        while let path = queue.popLast() {
            guard Self.moduleExtensions.contains(BundlePath.fileExtension(path)), let source = files[path] else { continue }
            guard String(validating: source, as: UTF8.self) != nil else {
                problems.append(EdgeDeployError(.invalidBundle, "the module is not UTF-8 text", file: path))
                continue
            }
            for specifier in ImportScanner.specifiers(in: source) {
                func problem(_ code: EdgeDeployError.Code, _ message: String, hint: String) {
                    problems.append(EdgeDeployError(code, message, file: path, line: specifier.line, column: specifier.column, hint: hint))
                }
                let text = specifier.text
                let lower = text.lowercased()
                let shown = FunctionName.quoted(text)
                if lower.hasPrefix("http:") || lower.hasPrefix("https:") {
                    problem(
                        .remoteImport, "imports the remote module \(shown)",
                        hint: "nothing is downloaded at deploy: copy the module into the function's folder and import it with a relative path")
                } else if lower.hasPrefix("npm:") || lower.hasPrefix("jsr:") {
                    problem(
                        .remoteImport, "imports the package \(shown)",
                        hint: "nothing is downloaded at deploy: vendor the package's code into the function's folder (node: built-ins are available)")
                } else if lower.hasPrefix("node:") || lower.hasPrefix("data:") {
                    continue
                } else if text.hasPrefix("./") || text.hasPrefix("../") {
                    guard let target = BundlePath.resolve(text, from: path) else {
                        problem(.unresolvedImport, "imports \(shown), which is outside the function's folder", hint: "keep every module the function uses inside its folder")
                        continue
                    }
                    if files[target] != nil, seen.insert(target).inserted { queue.append(target) }
                } else if text.hasPrefix("/") || lower.hasPrefix("file:") {
                    problem(.unresolvedImport, "imports the absolute path \(shown)", hint: "import the function's own files with a relative path (./lib/x.ts)")
                } else {
                    problem(
                        .unresolvedImport, "imports \(shown), which is not a relative path",
                        hint: "there is no import map: import the function's files with ./ paths and Node built-ins with node:")
                }
            }
        }
        if !problems.isEmpty { throw EdgeDeployRejection(problems) }
    }

    // MARK: Reading

    /// Reads a function's folder: every file except dotfiles and `node_modules`, with
    /// `function.json` at the root as the manifest. A symbolic link is followed only when it
    /// stays inside the folder; other special files are refused.
    public static func load(directory: String) throws(EdgeDeployRejection) -> FunctionBundle {
        func refuse(_ message: String, file: String? = nil) -> EdgeDeployRejection {
            EdgeDeployRejection([EdgeDeployError(.invalidBundle, message, file: file)])
        }
        guard let root = realPath(directory) else { throw refuse("cannot open the function's folder \(FunctionName.quoted(directory)): \(String(cString: strerror(errno)))") }
        var files: [String: [UInt8]] = [:]
        var manifest = try? FunctionManifest()
        var total = 0
        var visited: Set<String> = [root]

        func walk(_ real: String, _ relative: String, depth: Int) throws(EdgeDeployRejection) {
            guard depth <= 32 else { throw refuse("folders are nested more than 32 deep", file: relative) }
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: real).sorted()
            } catch {
                throw refuse("cannot list the folder: \(error.localizedDescription)", file: relative.isEmpty ? nil : relative)
            }
            for name in names where !name.hasPrefix(".") && name != "node_modules" {
                let path = relative.isEmpty ? name : relative + "/" + name
                var physical = real + "/" + name
                var info = stat()
                guard lstat(physical, &info) == 0 else { throw refuse("cannot read: \(String(cString: strerror(errno)))", file: path) }
                if info.st_mode & S_IFMT == S_IFLNK {
                    guard let target = realPath(physical), target.hasPrefix(root + "/") else {
                        throw refuse("is a symbolic link to a place outside the function's folder (or to nothing)", file: path)
                    }
                    physical = target
                    guard stat(physical, &info) == 0 else { throw refuse("cannot read: \(String(cString: strerror(errno)))", file: path) }
                }
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    guard visited.insert(physical).inserted else { continue }  // a folder linked twice is read once
                    try walk(physical, path, depth: depth + 1)
                case S_IFREG:
                    total += Int(info.st_size)
                    guard total <= maxBytes else { throw refuse("the function's folder holds more than \(maxBytes / 1024 / 1024) MiB of files") }
                    guard let data = FileManager.default.contents(atPath: physical) else { throw refuse("cannot read the file", file: path) }
                    if path == FunctionManifest.fileName {
                        do {
                            manifest = try FunctionManifest(json: Array(data))
                        } catch {
                            throw EdgeDeployRejection([error])
                        }
                        continue
                    }
                    guard files.count < maxFiles else { throw refuse("the function's folder has more than \(maxFiles) files") }
                    files[path] = Array(data)
                default:
                    throw refuse("is neither a file nor a folder (a pipe, socket or device)", file: path)
                }
            }
        }
        try walk(root, "", depth: 0)
        guard let manifest else { throw refuse("the default manifest is invalid") }
        return try FunctionBundle(files: files, manifest: manifest)
    }

    /// The keys of the admin endpoint's deploy body besides the manifest's.
    public static let requestKeys: Set<String> = ["name", "files"]

    /// Decodes the admin endpoint's deploy body: `{"name": …, "files": {"index.ts": "<text>",
    /// …}, "entrypoint"?, "verify_jwt"?, "allow_net"?, "secrets"?, "limits"?, "env"?}`. Files
    /// are UTF-8 text without NUL; a key given twice or unknown is refused.
    public static func decode(json bytes: [UInt8]) throws(EdgeDeployRejection) -> (name: FunctionName, bundle: FunctionBundle) {
        func refuse(_ message: String, file: String? = nil, hint: String? = nil, code: EdgeDeployError.Code = .invalidBundle) -> EdgeDeployRejection {
            EdgeDeployRejection([EdgeDeployError(code, message, file: file, hint: hint)])
        }
        let members: [(key: String, value: ArraySlice<UInt8>)]
        do {
            members = try JSONSlices.members(of: bytes)
        } catch {
            throw refuse("the body is not a JSON object: \(error.description)")
        }
        var name: FunctionName?
        var files: [String: [UInt8]]?
        var manifestMembers: [(key: String, value: ArraySlice<UInt8>)] = []
        for (key, raw) in members {
            switch key {
            case "name":
                guard name == nil else { throw refuse("the key name is given twice", code: .invalidName) }
                guard let text = JSONSlices.string(raw) else { throw refuse("name must be a string", code: .invalidName) }
                do {
                    name = try FunctionName(text)
                } catch {
                    throw EdgeDeployRejection([error])
                }
            case "files":
                guard files == nil else { throw refuse("the key files is given twice") }
                let entries: [(key: String, value: ArraySlice<UInt8>)]
                do {
                    entries = try JSONSlices.members(of: Array(raw))
                } catch {
                    throw refuse("files must be an object of path → text: \(error.description)")
                }
                guard entries.count <= maxFiles else { throw refuse("the bundle has \(entries.count) files; the limit is \(maxFiles)") }
                var decoded: [String: [UInt8]] = [:]
                for (path, value) in entries {
                    guard let text = JSONSlices.string(value) else { throw refuse("the content of a file must be a string", file: path) }
                    guard !text.utf8.contains(0) else { throw refuse("the file contains a NUL byte; files must be text", file: path) }
                    guard path != FunctionManifest.fileName else {
                        throw refuse(
                            "function.json cannot be a file of the body", file: path, hint: "give the manifest's keys (verify_jwt, allow_net, …) at the top level of the body")
                    }
                    guard decoded.updateValue(Array(text.utf8), forKey: path) == nil else { throw refuse("the file is given twice", file: path) }
                }
                files = decoded
            default:
                manifestMembers.append((key, raw))
            }
        }
        guard let name else { throw refuse("the body has no name", code: .invalidName) }
        guard let files, !files.isEmpty else { throw refuse("the body has no files") }
        let manifest: FunctionManifest
        do {
            manifest = try FunctionManifest(members: manifestMembers, source: nil)
        } catch {
            if error.message.hasPrefix("unknown key") {
                var widened = error
                widened.hint = "the body may hold " + (FunctionManifest.keys.union(requestKeys)).sorted().joined(separator: ", ")
                throw EdgeDeployRejection([widened])
            }
            throw EdgeDeployRejection([error])
        }
        return (name, try FunctionBundle(files: files, manifest: manifest))
    }

    // MARK: Writing

    /// Writes the files under `directory`, which must not exist yet (or, with `replacing`,
    /// is swapped out): first into a temporary sibling folder, then renamed into place, so a
    /// reader sees either nothing or the whole bundle. Files are 0644, folders 0755.
    public func materialize(into directory: String, replacing: Bool = false) throws(EdgeFileError) {
        let target = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        let parent = (target as NSString).deletingLastPathComponent
        let temporary = (parent.isEmpty ? "." : parent) + "/.tmp-" + UUID().uuidString
        do throws(EdgeFileError) {
            try makeFolder(temporary)
            for (path, bytes) in files.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
                var folder = temporary
                for component in path.split(separator: "/").dropLast() {
                    folder += "/" + component
                    if access(folder, F_OK) != 0 { try makeFolder(folder) }
                }
                try writeFile(temporary + "/" + path, bytes)
            }
            if rename(temporary, target) != 0 {
                let failure = errno
                guard replacing, failure == EEXIST || failure == ENOTEMPTY else {
                    throw EdgeFileError(path: target, reason: failure == EEXIST || failure == ENOTEMPTY ? "it exists already" : String(cString: strerror(failure)))
                }
                let retired = (parent.isEmpty ? "." : parent) + "/.old-" + UUID().uuidString
                guard rename(target, retired) == 0 else { throw EdgeFileError(path: target, reason: String(cString: strerror(errno))) }
                guard rename(temporary, target) == 0 else {
                    let reason = String(cString: strerror(errno))
                    _ = rename(retired, target)
                    throw EdgeFileError(path: target, reason: reason)
                }
                try? FileManager.default.removeItem(atPath: retired)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    private func makeFolder(_ path: String) throws(EdgeFileError) {
        guard mkdir(path, 0o755) == 0, chmod(path, 0o755) == 0 else { throw EdgeFileError(path: path, reason: String(cString: strerror(errno))) }
    }

    private func writeFile(_ path: String, _ bytes: [UInt8]) throws(EdgeFileError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw EdgeFileError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        guard fchmod(descriptor, 0o644) == 0 else { throw EdgeFileError(path: path, reason: String(cString: strerror(errno))) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                throw EdgeFileError(path: path, reason: String(cString: strerror(errno)))
            }
            written += result
        }
    }

    // MARK: Storage form

    /// The files in one deterministic byte string (what the store keeps and what the hash
    /// covers): `MBF1`, the file count (UInt32), then per file in path order (UTF-8 bytes)
    /// the path length (UInt16), the path, the content length (UInt32) and the content; all
    /// integers big-endian.
    public var archive: [UInt8] {
        var output: [UInt8] = Array("MBF1".utf8)
        output.reserveCapacity(size + files.count * 64 + 8)
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.bigEndian) { output.append(contentsOf: $0) } }
        append(UInt32(files.count))
        for (path, bytes) in files.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            append(UInt16(path.utf8.count))
            output.append(contentsOf: path.utf8)
            append(UInt32(bytes.count))
            output.append(contentsOf: bytes)
        }
        return output
    }

    /// The canonical listing the bundle's SHA-256 is computed over: ``archive`` followed by
    /// the manifest's sorted-key JSON (``FunctionManifest/jsonText``).
    public var canonicalListing: [UInt8] { archive + Array(manifest.jsonText.utf8) }

    /// A bundle from its ``archive`` and stored manifest; nil when the archive is damaged.
    public init?(archive bytes: [UInt8], manifest: FunctionManifest) {
        var offset = 0
        func read<T: FixedWidthInteger>(_: T.Type) -> T? {
            let width = MemoryLayout<T>.size
            guard offset + width <= bytes.count else { return nil }
            let value = bytes[offset..<offset + width].reduce(T.zero) { $0 << 8 | T($1) }
            offset += width
            return value
        }
        func take(_ count: Int) -> [UInt8]? {
            guard count <= bytes.count - offset else { return nil }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }
        guard take(4) == Array("MBF1".utf8), let count = read(UInt32.self), count <= Self.maxFiles else { return nil }
        var files: [String: [UInt8]] = [:]
        for _ in 0..<count {
            guard let pathLength = read(UInt16.self), let pathBytes = take(Int(pathLength)), let path = String(validating: pathBytes, as: UTF8.self),
                let length = read(UInt32.self), let content = take(Int(length))
            else { return nil }
            files[path] = content
        }
        guard offset == bytes.count, let bundle = try? FunctionBundle(files: files, manifest: manifest, checkImports: false) else { return nil }
        self = bundle
    }
}

/// A bundle could not be written to disk: where and why.
public struct EdgeFileError: Error, Sendable, CustomStringConvertible {
    /// The path that failed.
    public let path: String
    /// The system's reason.
    public let reason: String

    /// `cannot write <path>: <reason>`.
    public var description: String { "cannot write \(path): \(reason)" }
}

/// `realpath(3)` of `path`, or nil.
func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}
