import CArgon2
import CSodium
import Foundation

/// Argon2id password hashing (libargon2) with OWASP's minimum parameters or stronger.
///
/// Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so the
/// parameters travel with each hash and can be raised later without breaking old ones.
public struct PasswordHasher: Sendable {
    /// Memory in KiB (19 MiB by default, RFC 9106 / OWASP minimum).
    public var memoryKiB: UInt32 = 19 * 1024
    /// Passes over memory.
    public var iterations: UInt32 = 2
    /// Lanes.
    public var parallelism: UInt32 = 1

    /// The default parameters.
    public init() {}

    /// `sodium_init` (idempotent) before the salt is drawn from libsodium's generator.
    private static let sodiumReady: Bool = sodium_init() >= 0

    /// Why hashing failed (never contains the password).
    public struct HashError: Error, CustomStringConvertible {
        /// libargon2's message.
        public var description: String
    }

    /// Hashes `password` with a fresh 16-byte salt; the caller should wipe its own copy.
    public func hash(_ password: String) throws -> String {
        _ = Self.sodiumReady
        var salt = [UInt8](repeating: 0, count: 16)
        randombytes_buf(&salt, salt.count)
        var secret = Array(password.utf8)
        defer { secret.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) } }
        let length = argon2_encodedlen(iterations, memoryKiB, parallelism, UInt32(salt.count), 32, Argon2_id)
        var encoded = [CChar](repeating: 0, count: length + 1)
        let status = argon2id_hash_encoded(iterations, memoryKiB, parallelism, secret, secret.count, salt, salt.count, 32, &encoded, encoded.count)
        guard status == ARGON2_OK.rawValue else {
            throw HashError(description: "Argon2id hashing failed: \(String(cString: argon2_error_message(status)))")
        }
        return String(cString: encoded)
    }

    /// Whether `password` matches the PHC string `encoded` (constant time in libargon2).
    public static func verify(_ password: String, against encoded: String) -> Bool {
        var secret = Array(password.utf8)
        defer { secret.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) } }
        return argon2id_verify(encoded, secret, secret.count) == ARGON2_OK.rawValue
    }
}
