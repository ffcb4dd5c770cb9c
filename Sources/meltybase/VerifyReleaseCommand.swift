import ArgumentParser
import Crypto
import Foundation
import Kernel
import MeltyEd25519
import MeltyLicense
import MeltyProcess
import MeltyVendorTools

/// `meltybase verify-release [DIR|ZIP] [--public-key HEX|FILE]`: checks a release package's
/// signed `SHA256SUMS` and every file it lists (see docs/release.md). `meltybase release
/// keygen|sign` (``VerifyReleaseCommand/Release``) make the key and the signature.
struct VerifyReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-release",
        abstract: "Check a release package: the Ed25519 signature of SHA256SUMS, then every file's hash; no file missing or added.",
        discussion: """
            DIR is an unpacked package folder (default: the folder of this meltybase binary), ZIP the package itself \
            (unpacked into a temporary folder with unzip). The public key comes from --public-key (64 hex characters, \
            or a file holding them), else MELTYBASE_RELEASE_PUBLIC_KEY, else the package's own release-signing.pub: \
            that only proves the files are intact, so compare its fingerprint with the published one.

            In an unpacked folder, the data/ directory the kernel creates (keys, certificates, the database) is not \
            checked, and the output says so; in a zip, a data/ entry is reported as extra. Any other file that \
            SHA256SUMS does not list is reported as extra. Exit status 0 prints "release verified: N files"; 1 names each modified, missing \
            or extra file.

              ./meltybase verify-release
              meltybase verify-release meltybase-0.1.0-linux-x86_64.zip --public-key 3b6a27bc...
            """)

    /// The file of hashes, sha256sum's format (`<hex>  <path>`).
    static let sumsFile = "SHA256SUMS"
    /// The detached Ed25519 signature over the exact bytes of `SHA256SUMS`, as hex.
    static let signatureFile = "SHA256SUMS.sig"
    /// The package's public key (hex), for integrity checks without a published key.
    static let publicKeyFile = "release-signing.pub"
    /// The secret key's file name as `release keygen` writes it.
    static let secretKeyFile = "release-signing.key"
    /// Top-level folders the kernel writes into an unpacked package; never listed, never checked.
    static let runtimeFolders: Set<String> = ["data"]

    @Argument(help: ArgumentHelp("The unpacked package folder or the .zip (default: the folder of this binary).", valueName: "dir-or-zip"))
    var location: String?

    @Option(name: .customLong("public-key"), help: ArgumentHelp("The release public key: 64 hex characters or a file holding them.", valueName: "hex-or-file"))
    var publicKey: String?

    func run() throws {
        let target = location.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? KernelConfig.executableDirectory
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) else {
            throw CommandError("\(target) does not exist; pass the unpacked package folder or its .zip")
        }
        if isDirectory.boolValue {
            try verify(directory: target, skipsRuntimeFolders: true)
            return
        }
        // A zip holds nothing the kernel made: a data/ folder in it (keys, certificates, a
        // Postgres cluster with its own archive_command) would be loaded, so it counts as extra.
        let unpacked = try Self.unzip(target)
        defer { try? FileManager.default.removeItem(atPath: unpacked.temporary) }
        try verify(directory: unpacked.root, extraTopLevel: unpacked.strays, skipsRuntimeFolders: false)
    }

    /// Checks the signature, then the files, of the package in `directory`; an unpacked
    /// folder's runtime folders (a real data/ directory, which the kernel fills) are skipped.
    private func verify(directory: String, extraTopLevel: [String] = [], skipsRuntimeFolders: Bool) throws {
        let sumsPath = directory + "/" + Self.sumsFile
        guard let sums = FileManager.default.contents(atPath: sumsPath) else {
            throw CommandError("\(sumsPath) is missing: \(directory) is not a signed release package")
        }
        let key = try resolvePublicKey(directory: directory)
        let signaturePath = directory + "/" + Self.signatureFile
        guard let signatureText = FileManager.default.contents(atPath: signaturePath) else {
            throw CommandError("\(signaturePath) is missing: the package is not signed")
        }
        guard let signature = ByteEncoding.fromHex(String(decoding: signatureText, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
            signature.count == 64
        else {
            throw CommandError("\(signaturePath) is not an Ed25519 signature (expected 128 hex characters)")
        }
        guard Ed25519.verify(signature, of: Array(sums), publicKey: key.bytes) else {
            throw CommandError(
                "the signature in \(Self.signatureFile) does not match \(Self.sumsFile) under public key \(ByteEncoding.hex(key.bytes)) (\(key.source)): "
                    + "\(Self.sumsFile) was changed, or the package was signed with another key")
        }
        let listed: [ReleaseEntry]
        do {
            listed = try ReleaseEntry.parse(sums)
        } catch {
            throw CommandError("\(sumsPath): \(error)")
        }
        var problems: [String] = extraTopLevel.map { "extra: \($0) (outside the package folder in the zip)" }
        let present = Set(try Self.files(in: directory, skippingRuntimeFolders: skipsRuntimeFolders))
        for entry in listed {
            let path = directory + "/" + entry.path
            var status = stat()
            guard lstat(path, &status) == 0 else {
                problems.append("missing: \(entry.path)")
                continue
            }
            guard status.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else {
                problems.append("modified: \(entry.path) (no longer a regular file)")
                continue
            }
            let digest = try Self.sha256(file: path)
            if digest != entry.digest { problems.append("modified: \(entry.path)") }
        }
        let listedPaths = Set(listed.map(\.path))
        for path in present.sorted() where !listedPaths.contains(path) && path != Self.sumsFile && path != Self.signatureFile {
            problems.append("extra: \(path)")
        }
        guard problems.isEmpty else {
            for problem in problems { FileHandle.standardError.write(Data("\(problem)\n".utf8)) }
            throw CommandError("release NOT verified: \(problems.count) file\(problems.count == 1 ? "" : "s") differ from the signed \(Self.sumsFile) in \(directory)")
        }
        print("release verified: \(listed.count) files (public key \(ByteEncoding.hex(key.bytes)), \(key.source))")
        let skipped = skipsRuntimeFolders ? Self.runtimeFolders.sorted().filter { Self.isRealDirectory(directory + "/" + $0) } : []
        if !skipped.isEmpty {
            print("not checked: \(skipped.map { $0 + "/" }.joined(separator: ", ")) (made by the kernel on this machine: keys, certificates, the database)")
        }
    }

    /// The key to check against, and where it came from.
    private func resolvePublicKey(directory: String) throws -> (bytes: [UInt8], source: String) {
        if let publicKey {
            return (try Self.parsePublicKey(publicKey, what: "--public-key"), "--public-key")
        }
        if let value = ProcessInfo.processInfo.environment["MELTYBASE_RELEASE_PUBLIC_KEY"], !value.isEmpty {
            return (try Self.parsePublicKey(value, what: "MELTYBASE_RELEASE_PUBLIC_KEY"), "MELTYBASE_RELEASE_PUBLIC_KEY")
        }
        let path = directory + "/" + Self.publicKeyFile
        guard FileManager.default.fileExists(atPath: path) else {
            throw CommandError("no public key: pass --public-key or set MELTYBASE_RELEASE_PUBLIC_KEY (\(path) is missing too)")
        }
        let bytes = try Self.parsePublicKey(path, what: Self.publicKeyFile)
        let fingerprint = ByteEncoding.hex(Array(SHA256.hash(data: bytes))).prefix(16)
        FileHandle.standardError.write(
            Data(
                """
                warning: checking against the package's own \(Self.publicKeyFile) proves the files are intact, not who made them. \
                Compare its key \(ByteEncoding.hex(bytes)) (fingerprint \(fingerprint)) with the published one, \
                or pass --public-key / set MELTYBASE_RELEASE_PUBLIC_KEY.\n
                """.utf8))
        return (bytes, "the package's \(Self.publicKeyFile)")
    }

    /// A public key given as 64 hex characters, or as a file holding them.
    static func parsePublicKey(_ value: String, what: String) throws -> [UInt8] {
        var text = value.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.count != 64 || ByteEncoding.fromHex(text) == nil {
            guard let contents = FileManager.default.contents(atPath: value) else {
                throw CommandError("\(what): expected 64 hex characters (an Ed25519 public key) or a file holding them, found \"\(value.prefix(80))\"")
            }
            text = String(decoding: contents, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard text.count == 64, let bytes = ByteEncoding.fromHex(text) else {
            throw CommandError("\(what): \(value) does not hold an Ed25519 public key (64 hex characters)")
        }
        return bytes
    }

    /// Whether `path` is a directory itself (not a symbolic link to one).
    static func isRealDirectory(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0 && status.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR)
    }

    /// Regular files and symbolic links below `directory`, relative; with
    /// `skippingRuntimeFolders`, outside the top-level runtime folders that are real
    /// directories (a symbolic link named data/ is listed, and so reported).
    static func files(in directory: String, skippingRuntimeFolders: Bool = true) throws -> [String] {
        var found: [String] = []
        var pending = [""]
        while let relative = pending.popLast() {
            let absolute = relative.isEmpty ? directory : directory + "/" + relative
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: absolute)
            } catch {
                throw CommandError("cannot list \(absolute): \(error.localizedDescription)")
            }
            for name in names {
                let path = relative.isEmpty ? name : relative + "/" + name
                if skippingRuntimeFolders && relative.isEmpty && runtimeFolders.contains(name) && isRealDirectory(directory + "/" + name) { continue }
                var status = stat()
                guard lstat(directory + "/" + path, &status) == 0 else { continue }
                if status.st_mode & mode_t(S_IFMT) == mode_t(S_IFDIR) { pending.append(path) } else { found.append(path) }
            }
        }
        return found
    }

    /// The SHA-256 of a file's bytes, as lowercase hex.
    static func sha256(file path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CommandError("cannot read \(path)") }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk: Data?
            do {
                chunk = try handle.read(upToCount: 1 << 20)
            } catch {
                throw CommandError("cannot read \(path): \(error.localizedDescription)")
            }
            guard let chunk, !chunk.isEmpty else { break }
            hasher.update(data: chunk)
        }
        return ByteEncoding.hex(Array(hasher.finalize()))
    }

    /// Unpacks `zip` into a temporary folder: the package folder inside it, and any other
    /// top-level entries (which a package never has).
    static func unzip(_ zip: String) throws -> (temporary: String, root: String, strays: [String]) {
        guard let unzip = ChildSpawn.executable(named: "unzip", path: "/usr/bin:/bin") else {
            throw CommandError("unzip is not installed (apt-get install unzip); or unpack \(zip) yourself and pass the folder")
        }
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("meltybase-verify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let pid: pid_t
        do {
            pid = try ChildSpawn.spawn(executable: unzip, arguments: ["-q", zip, "-d", temporary], environment: ["PATH": "/usr/bin:/bin"], stdout: 2, stderr: 2)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw CommandError("\(error)")
        }
        guard let status = ChildSpawn.wait(for: pid), status == 0 else {
            try? FileManager.default.removeItem(atPath: temporary)
            throw CommandError("unzip could not unpack \(zip) (see its message above): not a valid package")
        }
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []).sorted()
        if entries.contains(sumsFile) { return (temporary, temporary, []) }
        let folders = entries.filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: temporary + "/" + name, isDirectory: &isDirectory) && isDirectory.boolValue
                && FileManager.default.fileExists(atPath: temporary + "/" + name + "/" + sumsFile)
        }
        guard folders.count == 1 else {
            try? FileManager.default.removeItem(atPath: temporary)
            throw CommandError("\(zip) holds no single package folder with \(sumsFile) (found: \(entries.joined(separator: ", ")))")
        }
        return (temporary, temporary + "/" + folders[0], entries.filter { $0 != folders[0] })
    }

    /// One line of `SHA256SUMS`.
    struct ReleaseEntry: Equatable {
        /// Lowercase hex SHA-256.
        var digest: String
        /// Path relative to the package folder.
        var path: String

        /// The line as sha256sum writes it.
        var line: String { "\(digest)  \(path)\n" }

        /// Every entry of a `SHA256SUMS` file; refuses absolute paths, `..` and duplicates.
        static func parse(_ data: Data) throws -> [ReleaseEntry] {
            var entries: [ReleaseEntry] = []
            var seen: Set<String> = []
            for (index, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
                let text = String(line)
                let parts = text.split(separator: " ", maxSplits: 1)
                guard parts.count == 2, parts[0].count == 64, parts[0].allSatisfy(\.isHexDigit) else {
                    throw CommandError("line \(index + 1) is not \"<sha256 hex>  <path>\"")
                }
                var path = String(parts[1])
                if path.hasPrefix(" ") || path.hasPrefix("*") { path.removeFirst() }
                let components = path.split(separator: "/", omittingEmptySubsequences: false)
                guard !path.isEmpty, !path.hasPrefix("/"), !components.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) else {
                    throw CommandError("line \(index + 1): \"\(path)\" is not a relative path inside the package")
                }
                guard seen.insert(path).inserted else { throw CommandError("line \(index + 1): \(path) is listed twice") }
                entries.append(ReleaseEntry(digest: parts[0].lowercased(), path: path))
            }
            guard !entries.isEmpty else { throw CommandError("it lists no files") }
            return entries
        }
    }

    /// `meltybase release keygen|sign`: the release signing key and the signature of a package folder.
    struct Release: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "release",
            abstract: "Create a release signing key, and sign an unpacked release folder (scripts/package runs these).",
            discussion: """
                  meltybase release keygen --out ~/mb-release        # release-signing.key (0600) and release-signing.pub
                  meltybase release sign --key ~/mb-release/release-signing.key dist/meltybase-0.1.0-linux-x86_64
                  meltybase verify-release dist/meltybase-0.1.0-linux-x86_64 --public-key ~/mb-release/release-signing.pub
                """,
            subcommands: [Keygen.self, Sign.self])

        /// `meltybase release keygen --out DIR`.
        struct Keygen: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create a release signing key pair (libsodium Ed25519 secret key as hex, mode 0600; public key as hex).",
                discussion: "Writes DIR/release-signing.key and DIR/release-signing.pub; never overwrites either.")

            @Option(name: .long, help: ArgumentHelp("Directory for the two key files (created with mode 0700 if missing).", valueName: "dir"))
            var out: String

            func run() throws {
                let files: LicenseIssuer.KeyFiles
                do {
                    files = try LicenseIssuer.generateKeyFiles(
                        directory: out, secretName: VerifyReleaseCommand.secretKeyFile, publicName: VerifyReleaseCommand.publicKeyFile)
                } catch {
                    throw CommandError(error.description)
                }
                print("wrote \(files.secretKeyPath) (secret, mode 0600: keep it out of every package and of version control)")
                print("wrote \(files.publicKeyPath)")
                print("public key: \(files.publicKeyHex)")
            }
        }

        /// `meltybase release sign --key FILE DIR`.
        struct Sign: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Write DIR/release-signing.pub, DIR/SHA256SUMS over every other file, and DIR/SHA256SUMS.sig.",
                discussion: """
                    Every regular file below DIR is listed, sorted by path, except SHA256SUMS, SHA256SUMS.sig and the data/ \
                    folder. Symbolic links are refused (copy the file instead). The signature is the hex of a detached \
                    Ed25519 signature over the exact bytes of SHA256SUMS. The secret key never enters DIR.
                    """)

            @Option(name: .long, help: ArgumentHelp("The secret key file from `release keygen` (mode 0600).", valueName: "file"))
            var key: String

            @Argument(help: ArgumentHelp("The unpacked package folder.", valueName: "dir"))
            var directory: String

            func run() throws {
                let directory = URL(fileURLWithPath: directory).standardizedFileURL.path
                let keyPath = URL(fileURLWithPath: key).standardizedFileURL.path
                guard !keyPath.hasPrefix(directory + "/") else {
                    throw CommandError("the secret key \(keyPath) is inside \(directory); a package never holds a private key: keep it elsewhere")
                }
                var secretKey: [UInt8]
                do {
                    secretKey = try LicenseIssuer.readSecretKey(file: keyPath)
                } catch {
                    throw CommandError("release signing key: \(error.description)")
                }
                defer { Ed25519.wipe(&secretKey) }
                let publicKey = Array(secretKey[32...])
                let publicPath = directory + "/" + VerifyReleaseCommand.publicKeyFile
                try? FileManager.default.removeItem(atPath: publicPath)
                guard FileManager.default.createFile(atPath: publicPath, contents: Data((ByteEncoding.hex(publicKey) + "\n").utf8), attributes: [.posixPermissions: 0o644])
                else { throw CommandError("cannot write \(publicPath)") }
                var sums = ""
                let paths = try VerifyReleaseCommand.files(in: directory).filter {
                    $0 != VerifyReleaseCommand.sumsFile && $0 != VerifyReleaseCommand.signatureFile
                }
                for path in paths.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
                    var status = stat()
                    guard lstat(directory + "/" + path, &status) == 0, status.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else {
                        throw CommandError("\(directory)/\(path) is not a regular file (symbolic link?); copy the file it points to instead")
                    }
                    guard !path.contains("\n"), !path.hasPrefix(" "), !path.hasPrefix("*") else {
                        throw CommandError("\(path): a file name may not contain a newline or start with a space or '*'")
                    }
                    sums += ReleaseEntry(digest: try VerifyReleaseCommand.sha256(file: directory + "/" + path), path: path).line
                }
                let bytes = Array(sums.utf8)
                let signature: [UInt8]
                do {
                    signature = try Ed25519.sign(bytes, secretKey: secretKey)
                } catch {
                    throw CommandError("cannot sign: \(error)")
                }
                guard Ed25519.verify(signature, of: bytes, publicKey: publicKey) else { throw CommandError("the signature does not verify; nothing was signed") }
                for (name, contents) in [(VerifyReleaseCommand.sumsFile, Data(bytes)), (VerifyReleaseCommand.signatureFile, Data((ByteEncoding.hex(signature) + "\n").utf8))] {
                    let path = directory + "/" + name
                    try? FileManager.default.removeItem(atPath: path)
                    guard FileManager.default.createFile(atPath: path, contents: contents, attributes: [.posixPermissions: 0o644]) else {
                        throw CommandError("cannot write \(path)")
                    }
                }
                print("signed \(paths.count) files in \(directory) (public key \(ByteEncoding.hex(publicKey)))")
            }
        }
    }
}
