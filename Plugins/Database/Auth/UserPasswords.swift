import CArgon2
import CSodium
import Foundation

/// Argon2id password hashes for portal users (OWASP's m = 19 MiB, t = 2, p = 1), PHC strings.
enum UserPasswords {
    static func hash(_ password: String) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try hashNow(password) }) }
        }
    }

    /// Hashes on the calling thread (blocks for tens of milliseconds).
    static func hashNow(_ password: String) throws -> String {
        var secret = Array(password.utf8)
        defer { sodium_memzero(&secret, secret.count) }
        var salt = [UInt8](repeating: 0, count: 16)
        randombytes_buf(&salt, salt.count)
        let length = argon2_encodedlen(2, 19456, 1, UInt32(salt.count), 32, Argon2_id)
        var encoded = [CChar](repeating: 0, count: length + 1)
        let status = argon2id_hash_encoded(2, 19456, 1, secret, secret.count, salt, salt.count, 32, &encoded, encoded.count)
        guard status == ARGON2_OK.rawValue else { throw AuthFailure(status: 500, code: "unexpected_failure", message: "password hashing failed") }
        return String(cString: encoded)
    }

    static func verify(_ password: String, against encoded: String) async -> Bool {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var secret = Array(password.utf8)
                defer { sodium_memzero(&secret, secret.count) }
                continuation.resume(returning: argon2id_verify(encoded, secret, secret.count) == ARGON2_OK.rawValue)
            }
        }
    }

    /// A hash to verify against when the account does not exist, so timing does not reveal it.
    static let decoy: String = (try? hashNow(UUID().uuidString)) ?? ""
}

/// A GoTrue-style failure: `{code, error_code, msg}`.
struct AuthFailure: Error {
    var status: Int
    var code: String
    var message: String
    /// Sent as `Retry-After` (429 and 503).
    var retryAfterSeconds: Int? = nil
}
