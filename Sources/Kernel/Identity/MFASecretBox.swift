import CSodium
import Foundation

/// Encrypts TOTP secrets at rest (libsodium XChaCha20-Poly1305, the AEAD form of
/// `crypto_secretbox`) under a 32-byte key kept in the data directory, not in the
/// database: a dump of the system database alone does not reveal any TOTP secret.
///
/// `<data>/mfa-secret.key` holds the key as hex, mode 0600 (a looser mode is refused).
/// Like `audit-signing.key`, every kernel sharing a system database needs the same file.
/// Each sealed value names its key by id, so a kernel holding another key says so instead
/// of failing obscurely. The additional data binds a ciphertext to its admin, so a value
/// copied onto another admin's row does not open.
///
/// Sealed form: `xc1:<key id, 16 hex>:<nonce, base64url>:<ciphertext and tag, base64url>`.
public struct MFASecretBox: Sendable {
    /// The key file's name inside the data directory.
    public static let fileName = "mfa-secret.key"
    private let key: [UInt8]
    /// First 8 bytes of SHA-256 over a label and the key, hex: names the key without revealing it.
    public let keyID: String
    /// Where the key lives.
    public let path: String

    /// The box over the key in `dataDirectory`, creating the key on first use.
    public static func loadOrCreate(dataDirectory: String) throws -> MFASecretBox {
        let path = dataDirectory + "/" + fileName
        let key = try SecretKeyFile.loadOrCreate(path: path, length: Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES), purpose: "the MFA secret key")
        return MFASecretBox(key: key, path: path)
    }

    init(key: [UInt8], path: String) {
        self.key = key
        self.path = path
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        let input = Array("meltybase-mfa-key-id\n".utf8) + key
        crypto_hash_sha256(&digest, input, UInt64(input.count))
        keyID = ByteEncoding.hex(Array(digest.prefix(8)))
    }

    /// Encrypts `plaintext` for the admin `adminID`.
    public func seal(_ plaintext: [UInt8], adminID: String) -> String {
        var nonce = [UInt8](repeating: 0, count: Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES))
        randombytes_buf(&nonce, nonce.count)
        let additional = Self.additionalData(adminID)
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + Int(crypto_aead_xchacha20poly1305_ietf_ABYTES))
        var length: UInt64 = 0
        crypto_aead_xchacha20poly1305_ietf_encrypt(
            &ciphertext, &length, plaintext, UInt64(plaintext.count), additional, UInt64(additional.count), nil, nonce, key)
        return "xc1:\(keyID):\(ByteEncoding.base64URL(nonce)):\(ByteEncoding.base64URL(Array(ciphertext.prefix(Int(length)))))"
    }

    /// Decrypts a value ``seal(_:adminID:)`` produced for `adminID`; the caller wipes the result.
    public func open(_ sealed: String, adminID: String) throws -> [UInt8] {
        let parts = sealed.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[0] == "xc1", let nonce = ByteEncoding.fromBase64URL(parts[2]),
              nonce.count == Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES),
              let ciphertext = ByteEncoding.fromBase64URL(parts[3]), ciphertext.count >= Int(crypto_aead_xchacha20poly1305_ietf_ABYTES) else {
            throw IdentityError.internalFailure("a stored TOTP secret is not in the sealed xc1 form")
        }
        guard parts[1] == keyID else {
            throw IdentityError(
                status: 503, code: "mfa_key_mismatch",
                message: "this admin's TOTP secret was sealed with MFA key \(parts[1]), but this kernel's \(path) is key \(keyID)",
                hint: "copy \(Self.fileName) from the data directory of the kernel that enrolled the admin to every kernel sharing the database")
        }
        let additional = Self.additionalData(adminID)
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count - Int(crypto_aead_xchacha20poly1305_ietf_ABYTES))
        var length: UInt64 = 0
        let status = crypto_aead_xchacha20poly1305_ietf_decrypt(
            &plaintext, &length, nil, ciphertext, UInt64(ciphertext.count), additional, UInt64(additional.count), nonce, key)
        guard status == 0 else {
            throw IdentityError.internalFailure("a stored TOTP secret does not decrypt for its admin (it was altered or moved between rows)")
        }
        return plaintext
    }

    private static func additionalData(_ adminID: String) -> [UInt8] {
        Array("meltybase-totp\n\(adminID)".utf8)
    }
}

/// A file holding a random key as hex, readable by its owner only.
enum SecretKeyFile {
    /// The key in `path`, creating `length` random bytes there (mode 0600) when missing.
    /// Concurrent creators agree: the file is written aside and linked into place.
    static func loadOrCreate(path: String, length: Int, purpose: String) throws -> [UInt8] {
        if let existing = try load(path: path, length: length, purpose: purpose) { return existing }
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        _ = Ed25519.initialized
        var key = [UInt8](repeating: 0, count: length)
        randombytes_buf(&key, key.count)
        var text = Array((ByteEncoding.hex(key) + "\n").utf8)
        defer { Ed25519.wipe(&text) }
        let temporary = path + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw IdentityError.internalFailure("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = write(descriptor, text, text.count)
        let synced = fsync(descriptor)
        close(descriptor)
        defer { unlink(temporary) }
        guard written == text.count, synced == 0 else { throw IdentityError.internalFailure("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        if link(temporary, path) != 0 {
            guard errno == EEXIST, let winner = try load(path: path, length: length, purpose: purpose) else {
                throw IdentityError.internalFailure("cannot create \(path): \(String(cString: strerror(errno)))")
            }
            Ed25519.wipe(&key)
            return winner
        }
        return key
    }

    private static func load(path: String, length: Int, purpose: String) throws -> [UInt8]? {
        var status = stat()
        guard stat(path, &status) == 0 else {
            if errno == ENOENT { return nil }
            throw IdentityError.internalFailure("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        let mode = status.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw IdentityError.internalFailure("\(path) has mode \(String(mode, radix: 8)); \(purpose) must be readable by its owner only (chmod 600 \(path))")
        }
        guard var data = FileManager.default.contents(atPath: path) else { throw IdentityError.internalFailure("cannot read \(path)") }
        defer { data.resetBytes(in: 0..<data.count) }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let key = ByteEncoding.fromHex(text), key.count == length else {
            throw IdentityError.internalFailure("\(path) does not hold \(purpose): \(length) bytes in hex")
        }
        return key
    }
}
