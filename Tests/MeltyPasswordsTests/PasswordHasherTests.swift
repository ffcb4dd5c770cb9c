import MeltyPasswords
import Testing

@Suite("Argon2id password hashes: OWASP parameters in PHC strings that keep verifying")
struct PasswordHasherTests {
    @Test("a hash is an argon2id PHC string with m=19456, t=2, p=1 and a fresh salt; it verifies only its password")
    func hashAndVerify() throws {
        let hasher = PasswordHasher()
        let first = try hasher.hash("correct horse battery staple")
        let second = try hasher.hash("correct horse battery staple")
        #expect(first.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(first != second, "each hash has its own salt")
        #expect(PasswordHasher.verify("correct horse battery staple", against: first))
        #expect(!PasswordHasher.verify("correct horse battery stapl", against: first))
        #expect(!PasswordHasher.verify("anything", against: "not a hash"))
    }

    @Test("a PHC string from another Argon2id implementation (libsodium's crypto_pwhash_str) verifies: the format is the standard one")
    func existingHash() throws {
        let hasher = PasswordHasher()
        let hash = try hasher.hash("password")
        let parts = hash.split(separator: "$")
        #expect(parts.count == 5 && parts[0] == "argon2id" && parts[1] == "v=19" && parts[2] == "m=19456,t=2,p=1")
        #expect(PasswordHasher.verify("password", against: Self.referenceHash))
        #expect(!PasswordHasher.verify("Password", against: Self.referenceHash))
    }

    /// `crypto_pwhash_str_alg(out, "password", 8, 2, 19456 * 1024, crypto_pwhash_ALG_ARGON2ID13)`
    /// (libsodium's own Argon2id, not libargon2), the parameters the kernel and plugin use.
    static let referenceHash = "$argon2id$v=19$m=19456,t=2,p=1$MZ/xYFTg/v5NRHULJBoPQA$T9tMJKBZu1SBj66wPo0xom+e6J+tiGbInrcI8FtgyQI"
}
