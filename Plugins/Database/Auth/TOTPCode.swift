import Crypto
import Foundation

/// RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30 s) as authenticator apps compute it.
enum TOTPCode {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")

    static func base32(_ bytes: [UInt8]) -> String {
        var output = ""
        var buffer = 0
        var bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | Int(byte)
            bits += 8
            while bits >= 5 {
                output.append(alphabet[(buffer >> (bits - 5)) & 31])
                bits -= 5
            }
        }
        if bits > 0 { output.append(alphabet[(buffer << (5 - bits)) & 31]) }
        return output
    }

    static func decodeBase32(_ text: String) -> [UInt8]? {
        var buffer = 0
        var bits = 0
        var output: [UInt8] = []
        for character in text.uppercased() where character != "=" {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            buffer = (buffer << 5) | value
            bits += 5
            if bits >= 8 {
                output.append(UInt8((buffer >> (bits - 8)) & 0xff))
                bits -= 8
            }
        }
        return output
    }

    static func code(secret: [UInt8], step: Int64) -> String {
        var counter = step.bigEndian
        let message = withUnsafeBytes(of: &counter) { Array($0) }
        let mac = Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
        let offset = Int(mac[mac.count - 1] & 0x0f)
        let value = (UInt32(mac[offset] & 0x7f) << 24) | (UInt32(mac[offset + 1]) << 16) | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
        return String(format: "%06d", value % 1_000_000)
    }

    /// The matching time step within ±1 step of now, if `code` is valid and newer than `after`.
    static func verify(_ code: String, secret: [UInt8], after lastStep: Int64, now: Date = Date()) -> Int64? {
        let current = Int64(now.timeIntervalSince1970) / 30
        for step in [current - 1, current, current + 1] where step > lastStep {
            if self.code(secret: secret, step: step) == code { return step }
        }
        return nil
    }
}
