import Foundation
import MeltyPostgres

/// `password_hash` of `POST /admin/users`: a hash imported from another service, stored as
/// it is and checked at sign-in. Argon2id PHC strings are verified by libargon2 (as the
/// hashes this plugin writes); bcrypt hashes (`$2a$`, `$2b$`, `$2y$`) by pgcrypto's
/// `crypt` in the portal database, and replaced by an Argon2id hash on the first sign-in
/// that matches. Parameters are bounded, so an imported hash cannot make a sign-in take
/// minutes or gigabytes.
enum AdminPasswordHash {
    /// Largest Argon2id memory accepted, in KiB (256 MiB).
    static let maxArgon2MemoryKiB = 262_144
    /// Largest Argon2id pass count accepted.
    static let maxArgon2Iterations = 10
    /// Largest Argon2id lane count accepted.
    static let maxArgon2Parallelism = 16
    /// Largest bcrypt cost accepted (2¹⁶ rounds, about 5 s).
    static let maxBcryptCost = 16

    private static let argon2Pattern = "^\\$argon2id\\$v=19\\$m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,3})\\$([A-Za-z0-9+/]{11,128})\\$([A-Za-z0-9+/]{16,128})$"
    private static let bcryptPattern = "^\\$2[aby]\\$[0-9]{2}\\$[./A-Za-z0-9]{53}$"

    /// The hash to store, or a 422 saying which formats are accepted and why this one is not.
    static func validated(_ hash: String) throws -> String {
        if hash.hasPrefix("$argon2id$") {
            guard let match = hash.range(of: argon2Pattern, options: .regularExpression), match == hash.startIndex..<hash.endIndex else {
                throw refusal("the Argon2id hash is not a PHC string $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash> (unpadded base64)")
            }
            let parameters = hash.split(separator: "$")[2].split(separator: ",").map { Int($0.drop { $0 != "=" }.dropFirst()) ?? Int.max }
            guard parameters.count == 3 else { throw refusal("the Argon2id parameters m, t, p are missing") }
            let (memory, iterations, lanes) = (parameters[0], parameters[1], parameters[2])
            guard (1...maxArgon2Parallelism).contains(lanes), (1...maxArgon2Iterations).contains(iterations), memory >= 8 * lanes, memory <= maxArgon2MemoryKiB else {
                throw refusal(
                    "the Argon2id parameters are out of range: p must be 1...\(maxArgon2Parallelism), t 1...\(maxArgon2Iterations), m between 8·p and \(maxArgon2MemoryKiB) KiB"
                )
            }
            return hash
        }
        if hash.hasPrefix("$2a$") || hash.hasPrefix("$2b$") || hash.hasPrefix("$2y$") {
            guard hash.range(of: bcryptPattern, options: .regularExpression) != nil, let cost = Int(hash.dropFirst(4).prefix(2)) else {
                throw refusal("the bcrypt hash is not $2a$/$2b$/$2y$, a two-digit cost, $ and 53 characters of salt and hash")
            }
            guard (4...maxBcryptCost).contains(cost) else { throw refusal("the bcrypt cost must be 4...\(maxBcryptCost), not \(cost)") }
            return hash
        }
        if hash.hasPrefix("$argon2i$") || hash.hasPrefix("$argon2d$") {
            throw refusal("only Argon2id ($argon2id$) is supported among the Argon2 variants")
        }
        throw refusal("the format is not supported")
    }

    /// Whether `encoded` is a bcrypt hash (verified through pgcrypto, not libargon2).
    static func isBcrypt(_ encoded: String) -> Bool {
        encoded.hasPrefix("$2a$") || encoded.hasPrefix("$2b$") || encoded.hasPrefix("$2y$")
    }

    /// Whether `password` matches the bcrypt `hash`, by pgcrypto's `crypt` (schema-qualified
    /// and typed, so no function a portal owner defines is called instead). `$2b$` and `$2y$`
    /// are checked as `$2a$`: the same algorithm for passwords bcrypt accepts.
    static func verifyBcrypt(_ password: String, against hash: String, pool: PostgresPool) async -> Bool {
        guard isBcrypt(hash), !password.utf8.contains(0), password.utf8.count <= 1024 else { return false }
        let normalized = "$2a$" + hash.dropFirst(4)
        do {
            let matched: String? = try await pool.run { connection in
                guard
                    let schema = try await connection.query(
                        "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'"
                    ).scalar
                else { return nil }
                return try await connection.query(
                    "SELECT (\(SQL.ident(schema)).crypt($1::text, $2::text) OPERATOR(pg_catalog.=) $2::text)::text", [password, normalized]
                ).scalar
            }
            return matched == "true"
        } catch {
            return false
        }
    }

    private static func refusal(_ reason: String) -> AuthFailure {
        AuthFailure(
            status: 422, code: "validation_failed",
            message: "password_hash: \(reason). Accepted: Argon2id PHC strings ($argon2id$v=19$...) and bcrypt ($2a$, $2b$, $2y$)")
    }
}
