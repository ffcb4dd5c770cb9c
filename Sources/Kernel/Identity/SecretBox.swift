import CSodium
import Foundation
import MeltyEd25519

/// Encrypts the kernel's secrets at rest (admins' TOTP secrets, portals' JWT secrets) with
/// libsodium XChaCha20-Poly1305 (the AEAD form of `crypto_secretbox`) under a 32-byte key
/// kept in the data directory, not in the database: a dump of the system database alone
/// reveals none of them.
///
/// `<keys dir>/mfa-secret.key` (the data directory unless `[kernel] keys_dir` says) holds the key as hex, mode 0600 (a looser mode is refused).
/// Like `audit-signing.key`, every kernel sharing a system database needs the same file.
/// Each sealed value names its key by id, so a kernel holding another key says so instead
/// of failing obscurely. The additional data binds a ciphertext to its context (an admin, a portal), so a
/// value copied onto another row does not open.
///
/// Sealed form: `xc1:<key id, 16 hex>:<nonce, base64url>:<ciphertext and tag, base64url>`.
public struct SecretBox: Sendable {
    /// The key file's name inside the data directory.
    public static let fileName = "mfa-secret.key"
    /// The version tag every sealed value starts with.
    static let formatTag = "xc1"
    private let key: [UInt8]
    /// First 8 bytes of SHA-256 over a label and the key, hex: names the key without revealing it.
    public let keyID: String
    /// Where the key lives.
    public let path: String

    /// The box over the key in `directory` (the key set's), creating the key on first use.
    public static func loadOrCreate(directory: String) throws -> SecretBox {
        let path = directory + "/" + fileName
        let key: [UInt8]
        do {
            key = try SecretKeyFile.loadOrCreate(path: path, length: Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES), purpose: "the MFA secret key")
        } catch {
            throw IdentityError.internalFailure(error.description)
        }
        return SecretBox(key: key, path: path)
    }

    init(key: [UInt8], path: String) {
        self.key = key
        self.path = path
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        let input = Array("meltybase-mfa-key-id\n".utf8) + key
        crypto_hash_sha256(&digest, input, UInt64(input.count))
        keyID = ByteEncoding.hex(Array(digest.prefix(8)))
    }

    /// Encrypts `plaintext` bound to `context` (e.g. an admin id).
    public func seal(_ plaintext: [UInt8], context: String) -> String {
        var nonce = [UInt8](repeating: 0, count: Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES))
        randombytes_buf(&nonce, nonce.count)
        let additional = Self.additionalData(context)
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + Int(crypto_aead_xchacha20poly1305_ietf_ABYTES))
        var length: UInt64 = 0
        crypto_aead_xchacha20poly1305_ietf_encrypt(
            &ciphertext, &length, plaintext, UInt64(plaintext.count), additional, UInt64(additional.count), nil, nonce, key)
        return "\(Self.formatTag):\(keyID):\(ByteEncoding.base64URL(nonce)):\(ByteEncoding.base64URL(Array(ciphertext.prefix(Int(length)))))"
    }

    /// Whether `text` has the sealed form's version tag (a cheap check before ``open(_:context:)``).
    static func looksSealed(_ text: String) -> Bool { text.hasPrefix(formatTag + ":") }

    /// Decrypts a value ``seal(_:context:)`` produced for `context`; the caller wipes the result.
    public func open(_ sealed: String, context: String) throws -> [UInt8] {
        let parts = sealed.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[0] == Self.formatTag, let nonce = ByteEncoding.fromBase64URL(parts[2]),
            nonce.count == Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES),
            let ciphertext = ByteEncoding.fromBase64URL(parts[3]), ciphertext.count >= Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)
        else {
            throw IdentityError.internalFailure("a stored sealed secret is not in the \(Self.formatTag) form")
        }
        guard parts[1] == keyID else {
            throw IdentityError(
                status: 503, code: "secret_key_mismatch",
                message: "this secret was sealed with key \(parts[1]), but this kernel's \(path) is key \(keyID)",
                hint: "give every kernel sharing the database the same key set (\(Self.fileName) and the rest of [kernel] keys_dir, docs/cluster.md)")
        }
        let additional = Self.additionalData(context)
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count - Int(crypto_aead_xchacha20poly1305_ietf_ABYTES))
        var length: UInt64 = 0
        let status = crypto_aead_xchacha20poly1305_ietf_decrypt(
            &plaintext, &length, nil, ciphertext, UInt64(ciphertext.count), additional, UInt64(additional.count), nonce, key)
        guard status == 0 else {
            throw IdentityError.internalFailure("a stored sealed secret does not decrypt for its row (it was altered or moved between rows)")
        }
        return plaintext
    }

    private static func additionalData(_ context: String) -> [UInt8] {
        Array("meltybase-totp\n\(context)".utf8)
    }
}
