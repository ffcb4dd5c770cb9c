import COpenSSL
import CSodium
import Foundation

/// Process-wide crypto set-up and the small primitives the Vault builds on: random
/// bytes, SHA-256, constant-time hex.
public enum VaultCrypto {
    private static let initialized: Bool = sodium_init() >= 0

    /// Initialises libsodium once (idempotent, thread-safe).
    public static func ensureInitialized() {
        precondition(initialized, "libsodium could not be initialised")
    }

    /// `count` random bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        ensureInitialized()
        var bytes = [UInt8](repeating: 0, count: count)
        randombytes_buf(&bytes, count)
        return bytes
    }

    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        ensureInitialized()
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = crypto_hash_sha256(&digest, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
        return digest
    }

    /// Lowercase hex (libsodium's constant-time encoder).
    public static func hex<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let array = Array(bytes)
        var text = [CChar](repeating: 0, count: array.count * 2 + 1)
        _ = sodium_bin2hex(&text, text.count, array, array.count)
        return String(cString: text)
    }

    /// Bytes of even-length hex text, or `nil` (libsodium's constant-time decoder: key
    /// material never takes data-dependent branches).
    public static func fromHex(_ text: String) -> [UInt8]? {
        let characters = Array(text.utf8)
        guard characters.count % 2 == 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: characters.count / 2)
        var used = 0
        let status = characters.withUnsafeBufferPointer { input in
            input.withMemoryRebound(to: CChar.self) {
                sodium_hex2bin(&bytes, bytes.count, $0.baseAddress, characters.count, nil, &used, nil)
            }
        }
        guard status == 0, used == bytes.count else { return nil }
        return bytes
    }
}
