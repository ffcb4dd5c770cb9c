import Foundation

/// The instance's Ed25519 key that signs audit checkpoints.
///
/// `<data>/audit-signing.key` holds libsodium's 64-byte secret key as hex (mode 0600; a
/// looser mode is refused). `<data>/audit-signing.pub` holds the public key as hex, for
/// `meltybase audit verify` and for keeping a copy off the machine. Every kernel sharing a
/// system database should use the same key (copy both files to each node).
public enum AuditSigningKey {
    /// File name of the secret key inside the data directory.
    public static let secretKeyFileName = "audit-signing.key"
    /// File name of the public key inside the data directory.
    public static let publicKeyFileName = "audit-signing.pub"

    /// Loads the key pair, creating it (and the data directory) on first use.
    public static func loadOrCreate(dataDirectory: String) throws -> Ed25519.KeyPair {
        let path = secretKeyPath(dataDirectory)
        if let existing = try load(path: path) {
            try writePublicKeyIfMissing(existing.publicKey, dataDirectory: dataDirectory)
            return existing
        }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        var pair = Ed25519.generate()
        // Write a private temporary file, then link it into place: a concurrent starter
        // either wins the link or reads the complete file the winner wrote.
        let temporary = path + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        var text = Array((ByteEncoding.hex(pair.secretKey) + "\n").utf8)
        defer { Ed25519.wipe(&text) }
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw AuditError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = write(descriptor, text, text.count)
        let synced = fsync(descriptor)
        close(descriptor)
        defer { unlink(temporary) }
        guard written == text.count, synced == 0 else { throw AuditError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        if link(temporary, path) != 0 {
            guard errno == EEXIST, let winner = try load(path: path) else {
                throw AuditError("cannot create \(path): \(String(cString: strerror(errno)))")
            }
            Ed25519.wipe(&pair.secretKey)
            return winner
        }
        try writePublicKeyIfMissing(pair.publicKey, dataDirectory: dataDirectory)
        return pair
    }

    /// The public key for verification: `audit-signing.pub`, cross-checked against the
    /// secret key file when that is readable. `nil` when neither file exists.
    public static func loadPublicKey(dataDirectory: String) throws -> [UInt8]? {
        let publicPath = dataDirectory + "/" + publicKeyFileName
        var fromSecret: [UInt8]?
        if access(secretKeyPath(dataDirectory), R_OK) == 0, var pair = try load(path: secretKeyPath(dataDirectory)) {
            fromSecret = pair.publicKey
            Ed25519.wipe(&pair.secretKey)
        }
        guard let text = try? String(contentsOfFile: publicPath, encoding: .utf8) else { return fromSecret }
        guard let key = ByteEncoding.fromHex(text.trimmingCharacters(in: .whitespacesAndNewlines)), key.count == 32 else {
            throw AuditError("\(publicPath) does not hold a 32-byte Ed25519 public key in hex")
        }
        if let fromSecret, fromSecret != key {
            throw AuditError("\(publicPath) does not match the public half of \(secretKeyPath(dataDirectory)); restore the matching pair")
        }
        return key
    }

    static func secretKeyPath(_ dataDirectory: String) -> String { dataDirectory + "/" + secretKeyFileName }

    /// The key pair in `path`, `nil` if the file does not exist.
    private static func load(path: String) throws -> Ed25519.KeyPair? {
        var status = stat()
        guard stat(path, &status) == 0 else {
            if errno == ENOENT { return nil }
            throw AuditError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        let mode = status.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw AuditError("\(path) has mode \(String(mode, radix: 8)); the audit signing key must be readable by its owner only (chmod 600 \(path))")
        }
        guard var data = FileManager.default.contents(atPath: path) else { throw AuditError("cannot read \(path)") }
        defer { data.resetBytes(in: 0..<data.count) }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard var secretKey = ByteEncoding.fromHex(text), secretKey.count == 64 else {
            throw AuditError("\(path) does not hold a 64-byte Ed25519 secret key in hex")
        }
        let publicKey = Array(secretKey[32...])
        // libsodium's secret key is seed + public key; check the two halves belong together.
        guard let probe = try? Ed25519.sign(Array("meltybase-audit-key-check".utf8), secretKey: secretKey),
              Ed25519.verify(probe, of: Array("meltybase-audit-key-check".utf8), publicKey: publicKey) else {
            Ed25519.wipe(&secretKey)
            throw AuditError("\(path) is not a valid Ed25519 key pair")
        }
        return Ed25519.KeyPair(publicKey: publicKey, secretKey: secretKey)
    }

    private static func writePublicKeyIfMissing(_ publicKey: [UInt8], dataDirectory: String) throws {
        let path = dataDirectory + "/" + publicKeyFileName
        guard !FileManager.default.fileExists(atPath: path) else { return }
        guard FileManager.default.createFile(atPath: path, contents: Data((ByteEncoding.hex(publicKey) + "\n").utf8), attributes: [.posixPermissions: 0o644]) else {
            throw AuditError("cannot write \(path)")
        }
    }
}
