import COpenSSL
import Foundation

/// AES-256-GCM through OpenSSL's EVP interface: the Vault's only cipher.
///
/// Tags are always 16 bytes. Nonces are 12 bytes in everything the Vault writes
/// (``AESGCM/nonceLength``); other lengths are accepted so the NIST vectors with long
/// IVs can be checked through the same code.
public enum AESGCM {
    /// Key length in bytes (AES-256).
    public static let keyLength = 32
    /// Nonce length the Vault uses (96 bits, GCM's fast path).
    public static let nonceLength = 12
    /// Tag length in bytes (128 bits).
    public static let tagLength = 16

    // EVP_CTRL_AEAD_* (openssl/evp.h); spelled out because they are macro aliases.
    private static let setIVLength: Int32 = 0x9
    private static let getTag: Int32 = 0x10
    private static let setTag: Int32 = 0x11

    /// Encrypts `plaintext` with `key` and `nonce`, authenticating `aad` too. Returns the
    /// ciphertext (same length as the plaintext) and the tag.
    public static func seal(
        key: UnsafeRawBufferPointer, nonce: [UInt8], plaintext: UnsafeRawBufferPointer, aad: [UInt8]
    ) throws -> (ciphertext: [UInt8], tag: [UInt8]) {
        guard key.count == keyLength else { throw VaultError.crypto("AES-256-GCM needs a 32-byte key, got \(key.count) bytes") }
        guard !nonce.isEmpty else { throw VaultError.crypto("AES-256-GCM needs a nonce") }
        guard let context = EVP_CIPHER_CTX_new() else { throw VaultError.crypto("out of memory (EVP_CIPHER_CTX_new)") }
        defer { EVP_CIPHER_CTX_free(context) }  // cleans the key schedule
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count)
        var tag = [UInt8](repeating: 0, count: tagLength)
        var length: Int32 = 0
        let ok: Bool = nonce.withUnsafeBufferPointer { nonceBytes in
            guard EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
                EVP_CIPHER_CTX_ctrl(context, setIVLength, Int32(nonce.count), nil) == 1,
                EVP_EncryptInit_ex(context, nil, nil, key.baseAddress?.assumingMemoryBound(to: UInt8.self), nonceBytes.baseAddress) == 1
            else { return false }
            if !aad.isEmpty {
                guard EVP_EncryptUpdate(context, nil, &length, aad, Int32(aad.count)) == 1 else { return false }
            }
            if plaintext.count > 0 {
                let done = ciphertext.withUnsafeMutableBufferPointer { output in
                    EVP_EncryptUpdate(context, output.baseAddress, &length, plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count))
                }
                guard done == 1, Int(length) == plaintext.count else { return false }
            }
            // GCM's final step writes no bytes; a scratch block keeps the pointer valid.
            var scratch = [UInt8](repeating: 0, count: 16)
            var finalLength: Int32 = 0
            let finished = EVP_EncryptFinal_ex(context, &scratch, &finalLength)
            return finished == 1 && EVP_CIPHER_CTX_ctrl(context, getTag, Int32(tagLength), &tag) == 1
        }
        guard ok else { throw VaultError.crypto("OpenSSL AES-256-GCM encryption failed: \(openSSLErrors())") }
        return (ciphertext, tag)
    }

    /// Decrypts and verifies. Any change to key, nonce, ciphertext, tag or `aad` throws
    /// ``VaultError/authenticationFailed`` and returns no bytes (the output buffer is
    /// wiped); the plaintext is never handed out before the tag checked.
    public static func open(
        key: UnsafeRawBufferPointer, nonce: [UInt8], ciphertext: UnsafeRawBufferPointer, tag: [UInt8], aad: [UInt8]
    ) throws -> SecretBytes {
        guard key.count == keyLength else { throw VaultError.crypto("AES-256-GCM needs a 32-byte key, got \(key.count) bytes") }
        guard tag.count == tagLength else { throw VaultError.authenticationFailed }
        guard !nonce.isEmpty else { throw VaultError.authenticationFailed }
        guard let context = EVP_CIPHER_CTX_new() else { throw VaultError.crypto("out of memory (EVP_CIPHER_CTX_new)") }
        defer { EVP_CIPHER_CTX_free(context) }
        let plaintext = SecretBytes(count: ciphertext.count)
        var tagCopy = tag
        var length: Int32 = 0
        let ok: Bool = nonce.withUnsafeBufferPointer { nonceBytes in
            guard EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
                EVP_CIPHER_CTX_ctrl(context, setIVLength, Int32(nonce.count), nil) == 1,
                EVP_DecryptInit_ex(context, nil, nil, key.baseAddress?.assumingMemoryBound(to: UInt8.self), nonceBytes.baseAddress) == 1
            else { return false }
            if !aad.isEmpty {
                guard EVP_DecryptUpdate(context, nil, &length, aad, Int32(aad.count)) == 1 else { return false }
            }
            return plaintext.withUnsafeMutableBytes { output in
                let out = output.baseAddress?.assumingMemoryBound(to: UInt8.self)
                if ciphertext.count > 0 {
                    guard EVP_DecryptUpdate(context, out, &length, ciphertext.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(ciphertext.count)) == 1
                    else { return false }
                }
                guard EVP_CIPHER_CTX_ctrl(context, setTag, Int32(tagLength), &tagCopy) == 1 else { return false }
                var scratch = [UInt8](repeating: 0, count: 16)
                var finalLength: Int32 = 0
                return EVP_DecryptFinal_ex(context, &scratch, &finalLength) == 1
            }
        }
        guard ok else {
            ERR_clear_error()
            plaintext.withUnsafeMutableBytes { if let base = $0.baseAddress { memset(base, 0, $0.count) } }
            throw VaultError.authenticationFailed
        }
        return plaintext
    }

    /// OpenSSL's queued error strings (then cleared), for unexpected failures.
    static func openSSLErrors() -> String {
        var messages: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(String(cString: buffer))
        }
        return messages.isEmpty ? "no OpenSSL error queued" : messages.joined(separator: "; ")
    }
}
