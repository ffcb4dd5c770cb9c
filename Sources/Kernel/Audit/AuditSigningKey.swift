import Foundation
import MeltyEd25519

/// The instance's Ed25519 key that signs audit checkpoints.
///
/// `<keys dir>/audit-signing.key` (the data directory unless `[kernel] keys_dir` says) holds libsodium's 64-byte secret key as hex (mode 0600; a
/// looser mode is refused). `<keys dir>/audit-signing.pub` holds the public key as hex, for
/// `meltybase audit verify` and for keeping a copy off the machine. Every kernel sharing a
/// system database should use the same key (copy both files to each node).
public enum AuditSigningKey {
    /// File name of the secret key inside the data directory.
    public static let secretKeyFileName = "audit-signing.key"
    /// File name of the public key inside the data directory.
    public static let publicKeyFileName = "audit-signing.pub"

    /// Loads the key pair, creating it (and the data directory) on first use.
    public static func loadOrCreate(directory: String) throws -> Ed25519.KeyPair {
        let pair = try loadOrCreatePair(path: secretKeyPath(directory))
        try writePublicKeyIfMissing(pair.publicKey, directory: directory)
        return pair
    }

    /// The public key for verification: `audit-signing.pub`, cross-checked against the
    /// secret key file when that is readable. `nil` when neither file exists.
    public static func loadPublicKey(directory: String) throws -> [UInt8]? {
        let publicPath = directory + "/" + publicKeyFileName
        var fromSecret: [UInt8]?
        if access(secretKeyPath(directory), R_OK) == 0, var pair = try load(path: secretKeyPath(directory)) {
            fromSecret = pair.publicKey
            Ed25519.wipe(&pair.secretKey)
        }
        guard let text = try? String(contentsOfFile: publicPath, encoding: .utf8) else { return fromSecret }
        guard let key = ByteEncoding.fromHex(text.trimmingCharacters(in: .whitespacesAndNewlines)), key.count == 32 else {
            throw AuditError("\(publicPath) does not hold a 32-byte Ed25519 public key in hex")
        }
        if let fromSecret, fromSecret != key {
            throw AuditError("\(publicPath) does not match the public half of \(secretKeyPath(directory)); restore the matching pair")
        }
        return key
    }

    static func secretKeyPath(_ directory: String) -> String { directory + "/" + secretKeyFileName }

    /// The key pair in `path`, `nil` if the file does not exist (mode and format checked).
    private static func load(path: String) throws -> Ed25519.KeyPair? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try loadOrCreatePair(path: path)
    }

    /// The pair in `path`, created there (mode 0600, linked into place) when missing.
    private static func loadOrCreatePair(path: String) throws -> Ed25519.KeyPair {
        var secretKey: [UInt8]
        do {
            secretKey = try SecretKeyFile.loadOrCreate(path: path, length: 64, purpose: "the audit signing key", generate: { Ed25519.generate().secretKey })
        } catch {
            throw AuditError(error.description)
        }
        return try keyPair(fromSecretKey: &secretKey, path: path)
    }

    /// Checks that libsodium's secret key (seed plus public key) holds a matching pair.
    private static func keyPair(fromSecretKey secretKey: inout [UInt8], path: String) throws -> Ed25519.KeyPair {
        let publicKey = Array(secretKey[32...])
        guard let probe = try? Ed25519.sign(Array("meltybase-audit-key-check".utf8), secretKey: secretKey),
            Ed25519.verify(probe, of: Array("meltybase-audit-key-check".utf8), publicKey: publicKey)
        else {
            Ed25519.wipe(&secretKey)
            throw AuditError("\(path) is not a valid Ed25519 key pair")
        }
        return Ed25519.KeyPair(publicKey: publicKey, secretKey: secretKey)
    }

    private static func writePublicKeyIfMissing(_ publicKey: [UInt8], directory: String) throws {
        let path = directory + "/" + publicKeyFileName
        guard !FileManager.default.fileExists(atPath: path) else { return }
        guard FileManager.default.createFile(atPath: path, contents: Data((ByteEncoding.hex(publicKey) + "\n").utf8), attributes: [.posixPermissions: 0o644]) else {
            throw AuditError("cannot write \(path)")
        }
    }
}
