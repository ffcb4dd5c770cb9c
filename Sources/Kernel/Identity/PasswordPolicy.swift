import Foundation

/// The admin password policy (OWASP ASVS level 2): at least 12 characters, not the
/// email, not a common password. Each violation carries a message a user can act on.
public struct PasswordPolicy: Sendable {
    /// Minimum length in characters.
    public var minimumLength = 12
    /// Maximum length in bytes (Argon2 handles more, but nobody types 1 KiB).
    public var maximumBytes = 1024

    /// The default policy.
    public init() {}

    /// A rule the password broke.
    public struct Violation: Error, Equatable, CustomStringConvertible {
        /// Stable code (`password_too_short`).
        public var code: String
        /// What to change.
        public var description: String
    }

    /// Every rule `password` breaks for the account `email`, empty when it passes.
    public func violations(password: String, email: String) -> [Violation] {
        var found: [Violation] = []
        if password.count < minimumLength {
            found.append(Violation(code: "password_too_short", description: "the password must have at least \(minimumLength) characters; it has \(password.count)"))
        }
        if password.utf8.count > maximumBytes {
            found.append(Violation(code: "password_too_long", description: "the password must be at most \(maximumBytes) bytes"))
        }
        let lowered = password.lowercased()
        let normalizedEmail = email.lowercased().trimmingCharacters(in: .whitespaces)
        let localPart = normalizedEmail.split(separator: "@").first.map(String.init) ?? normalizedEmail
        if lowered == normalizedEmail || (localPart.count >= 4 && lowered.contains(localPart)) {
            found.append(Violation(code: "password_contains_email", description: "the password must not be or contain the email address"))
        }
        if Self.isCommon(lowered) {
            found.append(Violation(code: "password_common", description: "the password is too common (it is on a list of breached or easily guessed passwords); choose another"))
        }
        return found
    }

    /// Common passwords and shapes (repeated characters, keyboard and digit runs).
    static func isCommon(_ lowered: String) -> Bool {
        if commonPasswords.contains(lowered) { return true }
        if Set(lowered).count <= 2 { return true }
        let stripped = lowered.trimmingCharacters(in: CharacterSet(charactersIn: "0123456789!@#$%^&*.?_- "))
        if commonPasswords.contains(stripped) { return true }
        for run in ["0123456789012345", "1234567890123456", "qwertyuiopasdfghjklzxcvbnm", "abcdefghijklmnopqrstuvwxyz", "9876543210987654"] where run.contains(lowered) {
            return true
        }
        return false
    }

    /// Frequent entries of public breach corpora (lowercased), including the 12-plus
    /// character ones that pass a length rule alone.
    static let commonPasswords: Set<String> = [
        "password", "password1", "password12", "password123", "password1234", "password12345", "password123456",
        "passw0rd", "p@ssword", "p@ssw0rd", "p@ssw0rd123", "passwordpassword", "mypassword", "mypassword123",
        "123456", "12345678", "123456789", "1234567890", "123456789012", "1234567890123", "12345678910", "123123123123",
        "qwerty", "qwerty123", "qwertyuiop", "qwertyuiop123", "qwerty123456", "1q2w3e4r5t6y", "1qaz2wsx3edc", "1q2w3e4r5t6y7u",
        "iloveyou", "iloveyou123", "iloveyouforever", "letmein", "letmein123", "letmeinplease", "welcome", "welcome123",
        "welcome12345", "welcometomyworld", "admin", "admin123", "admin12345", "administrator", "administrator1", "adminadmin",
        "adminadmin123", "rootroot", "rootpassword", "changeme", "changeme123", "changemeplease", "default", "defaultpassword",
        "monkey", "dragon", "football", "baseball", "superman", "batman", "trustno1", "sunshine", "princess", "starwars",
        "michael", "shadow", "master", "masterpassword", "whatever", "secret", "secretpassword", "topsecret", "supersecret",
        "supersecretpassword", "correcthorsebatterystaple", "thequickbrownfox", "abc123", "abcd1234", "abcdefg123",
        "qazwsxedcrfv", "zaq12wsxcde3", "asdfghjkl", "asdfghjkl123", "zxcvbnm", "zxcvbnm123", "computer", "internet",
        "meltybase", "meltybase123", "meltybase2026", "supabase", "supabase123", "postgres", "postgres123", "postgrespassword",
        "summer2024", "summer2025", "summer2026", "winter2024", "winter2025", "winter2026", "spring2026", "autumn2026",
        "january2026", "november2026", "december2026", "football123", "baseball123", "princess123", "sunshine123",
        "chocolate", "chocolate123", "butterfly", "liverpool", "manchester", "jennifer", "jordan23", "michelle", "pokemon",
        "minecraft", "minecraft123", "fortnite", "starwars123", "harrypotter", "loveyouforever", "ilovemyfamily",
        "strongpassword", "strongpassword123", "securepassword", "securepassword123", "verysecurepassword", "goodpassword",
    ]
}
