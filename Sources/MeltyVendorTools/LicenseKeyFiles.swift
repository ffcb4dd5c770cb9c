import Foundation
import MeltyEd25519
import MeltyLicense

/// Vendor tooling: the license signing key pair (`meltybase license keygen`).
extension LicenseIssuer {
    /// Where `generateKeyFiles` put the key pair.
    public struct KeyFiles: Sendable, Equatable {
        /// Path of the secret key file.
        public var secretKeyPath: String
        /// Path of the public key file.
        public var publicKeyPath: String
        /// The public key as 64 hex characters, the value of `[license] public_key`.
        public var publicKeyHex: String
    }

    /// Creates a new key pair in `directory` (created with mode 0700 if missing): the secret
    /// key as hex in `secretName` (mode 0600), the public key in `publicName` (the license
    /// pair by default; `meltybase release keygen` names the release pair). Refuses when
    /// either file already exists: a signing key is never overwritten.
    public static func generateKeyFiles(
        directory: String, secretName: String = secretKeyFileName, publicName: String = publicKeyFileName
    ) throws(LicenseIssuerError) -> KeyFiles {
        let secretPath = (directory as NSString).appendingPathComponent(secretName)
        let publicPath = (directory as NSString).appendingPathComponent(publicName)
        var status = stat()
        for path in [secretPath, publicPath] where lstat(path, &status) == 0 {
            throw LicenseIssuerError("\(path) already exists; keygen never overwrites a key: move the old pair away or choose another --out directory")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw LicenseIssuerError("cannot create the directory \(directory): \(error.localizedDescription)")
        }

        var pair = Ed25519.generate()
        defer { Ed25519.wipe(&pair.secretKey) }
        var secretLine = ByteEncoding.hexDigits(pair.secretKey, suffix: [UInt8(ascii: "\n")])
        defer { Ed25519.wipe(&secretLine) }
        try createFile(secretPath, contents: secretLine, mode: 0o600)
        do {
            try createFile(publicPath, contents: ByteEncoding.hexDigits(pair.publicKey, suffix: [UInt8(ascii: "\n")]), mode: 0o644)
        } catch {
            unlink(secretPath)
            throw error
        }
        return KeyFiles(secretKeyPath: secretPath, publicKeyPath: publicPath, publicKeyHex: ByteEncoding.hex(pair.publicKey))
    }

    /// Creates `path` exclusively (never following or replacing anything) with `mode`
    /// regardless of the umask, writes `contents` and flushes it to disk.
    private static func createFile(_ path: String, contents: [UInt8], mode: mode_t) throws(LicenseIssuerError) {
        do throws(ExclusiveFile.Failure) {
            try ExclusiveFile.create(path, contents: contents, mode: mode, sync: true)
        } catch {
            let reason = error.exists ? "it already exists; keygen never overwrites a key" : error.reason
            throw LicenseIssuerError("cannot \(error.atCreate ? "create" : "write") \(path): \(reason)")
        }
    }
}
