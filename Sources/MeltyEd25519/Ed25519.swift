import CSodium
import Foundation

/// Ed25519 signatures through libsodium (`crypto_sign_*`).
public enum Ed25519 {
    /// A key pair; `secretKey` is libsodium's 64-byte form (seed plus public key).
    public struct KeyPair: Sendable {
        /// 32 bytes.
        public var publicKey: [UInt8]
        /// 64 bytes; wipe with ``Ed25519/wipe(_:)`` when done.
        public var secretKey: [UInt8]

        /// A pair of these keys (not checked against each other).
        public init(publicKey: [UInt8], secretKey: [UInt8]) {
            self.publicKey = publicKey
            self.secretKey = secretKey
        }
    }

    /// Why a key or signature was refused.
    public struct KeyError: Error, CustomStringConvertible {
        /// What is wrong.
        public var description: String
    }

    /// Whether libsodium initialised (`sodium_init`, run once on first use); every
    /// libsodium caller reads it first.
    public static let initialized: Bool = sodium_init() >= 0

    /// A fresh random key pair.
    public static func generate() -> KeyPair {
        precondition(initialized, "libsodium failed to initialise")
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var secretKey = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        crypto_sign_keypair(&publicKey, &secretKey)
        return KeyPair(publicKey: publicKey, secretKey: secretKey)
    }

    /// The 64-byte detached signature of `message`.
    public static func sign(_ message: [UInt8], secretKey: [UInt8]) throws -> [UInt8] {
        precondition(initialized, "libsodium failed to initialise")
        guard secretKey.count == Int(crypto_sign_SECRETKEYBYTES) else {
            throw KeyError(description: "an Ed25519 secret key has \(crypto_sign_SECRETKEYBYTES) bytes, found \(secretKey.count)")
        }
        var signature = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
        crypto_sign_detached(&signature, nil, message, UInt64(message.count), secretKey)
        return signature
    }

    /// Whether `signature` is a valid signature of `message` by `publicKey`.
    public static func verify(_ signature: [UInt8], of message: [UInt8], publicKey: [UInt8]) -> Bool {
        precondition(initialized, "libsodium failed to initialise")
        guard signature.count == Int(crypto_sign_BYTES), publicKey.count == Int(crypto_sign_PUBLICKEYBYTES) else { return false }
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
    }

    /// Overwrites key material in place (`sodium_memzero`).
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
    }
}

/// Hex and base64url helpers for keys, signatures and hashes.
public enum ByteEncoding {
    /// Lowercase hex.
    public static func hex(_ bytes: [UInt8]) -> String {
        String(decoding: hexDigits(bytes), as: UTF8.self)
    }

    /// Lowercase hex digits of `bytes` as bytes, then `suffix`, in one buffer, so secret
    /// material need never become a `String` (a `String` cannot be wiped; these bytes can,
    /// with ``Ed25519/wipe(_:)``).
    public static func hexDigits(_ bytes: [UInt8], suffix: [UInt8] = []) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        var output = [UInt8](repeating: 0, count: bytes.count * 2 + suffix.count)
        for (index, byte) in suffix.enumerated() { output[bytes.count * 2 + index] = byte }
        for (index, byte) in bytes.enumerated() {
            output[2 * index] = digits[Int(byte >> 4)]
            output[2 * index + 1] = digits[Int(byte & 0x0F)]
        }
        return output
    }

    /// Bytes of a hex string, or nil when it is not hex of even length.
    public static func fromHex(_ text: String) -> [UInt8]? {
        bytes(fromHex: Array(text.utf8))
    }

    /// Bytes of hex digits (either case), or nil when they are not hex of even length; what
    /// was decoded before a bad digit is wiped, so secret material can be decoded this way.
    public static func bytes<Digits: Collection>(fromHex hex: Digits) -> [UInt8]? where Digits.Element == UInt8 {
        guard hex.count % 2 == 0 else { return nil }
        var output = [UInt8](repeating: 0, count: hex.count / 2)
        var index = hex.startIndex
        var position = 0
        while index != hex.endIndex {
            let next = hex.index(after: index)
            guard let high = nibble(hex[index]), let low = nibble(hex[next]) else {
                Ed25519.wipe(&output)
                return nil
            }
            output[position] = high << 4 | low
            position += 1
            index = hex.index(after: next)
        }
        return output
    }

    private static func nibble(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return character - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Unpadded base64url.
    public static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Bytes of unpadded or padded base64url, or nil.
    public static func fromBase64URL(_ text: String) -> [UInt8]? {
        guard text.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "=" }), text.allSatisfy(\.isASCII) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map(Array.init)
    }
}
