import Foundation
import MeltyPasswords

/// Portal users' passwords: ``PasswordHasher`` (Argon2id, PHC strings), off the caller's thread.
enum UserPasswords {
    static func hash(_ password: String) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try hashNow(password) }) }
        }
    }

    /// Hashes on the calling thread (blocks for tens of milliseconds).
    static func hashNow(_ password: String) throws -> String {
        do {
            return try PasswordHasher().hash(password)
        } catch {
            throw AuthFailure(status: 500, code: "unexpected_failure", message: "password hashing failed")
        }
    }

    static func verify(_ password: String, against encoded: String) async -> Bool {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: PasswordHasher.verify(password, against: encoded)) }
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

    /// GoTrue's weak-password refusal (the body adds `weak_password.reasons`, which
    /// supabase-py reads to raise `AuthWeakPasswordError`).
    static let weakPassword = AuthFailure(status: 422, code: "weak_password", message: "Password should be at least 8 characters.")
}
