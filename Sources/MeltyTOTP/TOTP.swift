import Crypto
import Foundation

/// Time-based one-time passwords (RFC 6238) over HOTP (RFC 4226), as authenticator apps
/// compute them: HMAC-SHA-1, 6 digits, 30-second steps from the Unix epoch by default.
///
/// SHA-256 and SHA-512 exist for RFC 6238's own test vectors; admins get SHA-1, the only
/// algorithm every authenticator app honours.
public struct TOTP: Sendable {
    /// The HMAC hash function.
    public enum Algorithm: Sendable {
        case sha1, sha256, sha512
    }

    /// The shared secret (20 random bytes for new enrolments).
    public var secret: [UInt8]
    /// Digits per code (6; the RFC's vectors use 8).
    public var digits: Int
    /// Seconds per step.
    public var period: Int64
    /// HMAC hash function.
    public var algorithm: Algorithm

    /// Bytes in a freshly generated secret (160 bits, RFC 4226's recommendation).
    public static let secretLength = 20

    /// A generator for `secret`.
    public init(secret: [UInt8], digits: Int = 6, period: Int64 = 30, algorithm: Algorithm = .sha1) {
        precondition((1...9).contains(digits) && period > 0)
        self.secret = secret
        self.digits = digits
        self.period = period
        self.algorithm = algorithm
    }

    /// The time step containing `date` (`floor(unix time / period)`).
    public func step(at date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 / Double(period)).rounded(.down))
    }

    /// The code of `step`, zero-padded to ``digits``.
    public func code(step: Int64) -> String {
        var counter = UInt64(bitPattern: step).bigEndian
        let message = withUnsafeBytes(of: &counter) { Array($0) }
        let key = SymmetricKey(data: secret)
        let mac: [UInt8]
        switch algorithm {
        case .sha1: mac = Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: key))
        case .sha256: mac = Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
        case .sha512: mac = Array(HMAC<SHA512>.authenticationCode(for: message, using: key))
        }
        // RFC 4226 section 5.3: dynamic truncation.
        let offset = Int(mac[mac.count - 1] & 0x0f)
        let binary =
            (UInt32(mac[offset] & 0x7f) << 24) | (UInt32(mac[offset + 1]) << 16)
            | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
        var modulus: UInt32 = 1
        for _ in 0..<digits { modulus *= 10 }
        let value = String(binary % modulus)
        return String(repeating: "0", count: digits - value.count) + value
    }

    /// The code valid at `date`.
    public func code(at date: Date) -> String {
        code(step: step(at: date))
    }

    /// The step within `window` steps of `date` (either side) whose code is `code`, or `nil`;
    /// with `after`, only steps later than it count (a step already used is a replay).
    /// Every candidate is compared in constant time, so timing does not reveal which matched.
    public func matchingStep(_ code: String, at date: Date, window: Int64 = 1, after lastStep: Int64? = nil) -> Int64? {
        let given = Array(code.utf8)
        guard given.count == digits, given.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        let center = step(at: date)
        var found: Int64?
        for candidate in (center - window)...(center + window) {
            let matches = Self.constantTimeEqual(Array(self.code(step: candidate).utf8), given)
            if matches, found == nil, candidate > (lastStep ?? .min) { found = candidate }
        }
        return found
    }

    /// A fresh random secret of ``secretLength`` bytes.
    public static func generateSecret() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<secretLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// The `otpauth://` URI authenticator apps scan (Google's Key Uri Format); SHA-1, 6
    /// digits and 30 s are the format's defaults, so they are not spelled out.
    public static func provisioningURI(secret: [UInt8], account: String, issuer: String = "MeltyBase") -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: ":/?#&=+")
        let encode = { (text: String) in text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text }
        return "otpauth://totp/\(encode(issuer)):\(encode(account))?secret=\(Base32.encode(secret))&issuer=\(encode(issuer))"
    }

    /// Whether two byte strings are equal, in time that depends only on their lengths.
    public static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }
}

/// RFC 4648 base32 (`A-Z2-7`), the alphabet TOTP secrets travel in.
public enum Base32 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// Upper-case base32 without `=` padding (what authenticator apps expect).
    public static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | UInt32(byte)
            bits += 8
            while bits >= 5 {
                output.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { output.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return String(decoding: output, as: UTF8.self)
    }

    /// Bytes of base32 text (either case; spaces, dashes and `=` padding ignored), or `nil`.
    public static func decode(_ text: String) -> [UInt8]? {
        var output: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for character in text.uppercased().utf8 where character != UInt8(ascii: " ") && character != UInt8(ascii: "-") && character != UInt8(ascii: "=") {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            buffer = (buffer << 5) | UInt32(value)
            bits += 5
            if bits >= 8 {
                output.append(UInt8((buffer >> UInt32(bits - 8)) & 0xff))
                bits -= 8
            }
        }
        return output
    }
}
