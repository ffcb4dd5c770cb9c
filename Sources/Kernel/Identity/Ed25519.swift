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
    }

    /// Why a key or signature was refused.
    public struct KeyError: Error, CustomStringConvertible {
        /// What is wrong.
        public var description: String
    }

    static let initialized: Bool = sodium_init() >= 0

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
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// Bytes of a hex string, or nil when it is not hex of even length.
    public static func fromHex(_ text: String) -> [UInt8]? {
        let characters = Array(text.utf8)
        guard characters.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(characters.count / 2)
        var index = 0
        while index < characters.count {
            guard let high = nibble(characters[index]), let low = nibble(characters[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
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
