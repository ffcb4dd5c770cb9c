import CSodium
import Foundation
import MeltyEd25519

/// Why a license, or the public key meant to check it, was refused.
public enum LicenseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The string is not a well-formed `MB1` license; the text says what is wrong.
    case malformed(String)
    /// The Ed25519 signature does not match the payload and the configured public key.
    case badSignature
    /// The license expired at this time.
    case expired(Date)
    /// `issued_at` lies more than ``LicenseVerifier/clockSkewAllowance`` in the future.
    case notYetValid
    /// The license is bound to an instance other than this one.
    case wrongInstance
    /// No public key is configured.
    case noPublicKey
    /// The configured public key is not 32 bytes of hex, or not an Ed25519 point.
    case badPublicKey

    /// A stable snake_case code for APIs and logs (`bad_signature`, `expired`, ...).
    public var reasonCode: String {
        switch self {
        case .malformed: "malformed"
        case .badSignature: "bad_signature"
        case .expired: "expired"
        case .notYetValid: "not_yet_valid"
        case .wrongInstance: "wrong_instance"
        case .noPublicKey: "no_public_key"
        case .badPublicKey: "bad_public_key"
        }
    }

    /// A sentence a user can act on.
    public var description: String {
        switch self {
        case .malformed(let problem):
            "malformed license: \(problem)"
        case .badSignature:
            "license signature does not verify with the configured public key"
        case .expired(let date):
            "the license expired at \(License.formatTimestamp(date)); ask the vendor for a renewed license"
        case .notYetValid:
            "the license is issued more than 5 minutes in the future; check this machine's clock"
        case .wrongInstance:
            "the license is bound to another instance; ask the vendor for a license for this instance"
        case .noPublicKey:
            "no license public key is configured: set [license] public_key or MELTYBASE_LICENSE_PUBLIC_KEY"
        case .badPublicKey:
            "the license public key is not valid: expected 64 hex characters (32 bytes) of an Ed25519 public key, as in license-signing.pub"
        }
    }
}

/// Checks `MB1` license strings offline against the vendor's Ed25519 public key.
///
/// The checks run in this order, so that unauthenticated bytes reach nothing but the
/// base64url decoder and libsodium:
/// 1. length (at most ``License/maximumStringBytes``), surrounding ASCII whitespace trimmed;
/// 2. shape `MB1.<payload>.<signature>`, both parts canonical unpadded base64url, a
///    64-byte signature;
/// 3. the Ed25519 signature over the payload bytes exactly as carried;
/// 4. the payload: the canonical JSON of valid fields (``License/init(payload:)``);
/// 5. time: not expired, not issued more than 5 minutes ahead of `now`;
/// 6. the instance binding.
public struct LicenseVerifier: Sendable {
    /// How far `issued_at` may lie ahead of the local clock (5 minutes).
    public static let clockSkewAllowance: TimeInterval = 300

    /// The 32-byte Ed25519 public key.
    public let publicKey: [UInt8]

    /// A verifier for the hex public key from `[license] public_key` or
    /// `MELTYBASE_LICENSE_PUBLIC_KEY`. Throws ``LicenseError/noPublicKey`` for nil or an
    /// empty string and ``LicenseError/badPublicKey`` for anything but 64 hex characters
    /// encoding a valid Ed25519 point.
    public init(publicKeyHex: String?) throws(LicenseError) {
        let hex = (publicKeyHex ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard !hex.isEmpty else { throw .noPublicKey }
        guard hex.utf8.count == 2 * Int(crypto_sign_PUBLICKEYBYTES), let key = ByteEncoding.fromHex(hex) else { throw .badPublicKey }
        try self.init(publicKey: key)
    }

    /// A verifier for a raw 32-byte key.
    init(publicKey: [UInt8]) throws(LicenseError) {
        _ = Ed25519.initialized
        // Refuses small-order and non-canonical points, which no real key pair produces.
        guard publicKey.count == Int(crypto_sign_PUBLICKEYBYTES), crypto_core_ed25519_is_valid_point(publicKey) == 1 else {
            throw .badPublicKey
        }
        self.publicKey = publicKey
    }

    /// The license in `string` if it is well formed, signed by this key, valid at `now`,
    /// and, when it names an instance, bound to `instanceID`. A bound license is refused
    /// when `instanceID` is nil: the kernel must always pass its own id.
    public func verify(_ string: String, now: Date = Date(), instanceID: String? = nil) throws(LicenseError) -> License {
        let license = try verifyIgnoringInstanceBinding(string, now: now)
        if let bound = license.instance, bound != instanceID { throw .wrongInstance }
        return license
    }

    /// Every check of ``verify(_:now:instanceID:)`` except the instance binding. Only for
    /// tooling that inspects a license away from its instance (`meltybase license verify`);
    /// the kernel uses ``verify(_:now:instanceID:)``.
    public func verifyIgnoringInstanceBinding(_ string: String, now: Date = Date()) throws(LicenseError) -> License {
        let (payload, signature) = try Self.split(string)
        guard Ed25519.verify(signature, of: payload, publicKey: publicKey) else { throw .badSignature }
        let license = try License(payload: payload)
        if let expiresAt = license.expiresAt, now >= expiresAt { throw .expired(expiresAt) }
        if license.issuedAt.timeIntervalSince(now) > Self.clockSkewAllowance { throw .notYetValid }
        return license
    }

    /// The payload and signature bytes of `MB1.<payload>.<signature>`.
    static func split(_ string: String) throws(LicenseError) -> (payload: [UInt8], signature: [UInt8]) {
        guard string.utf8.count <= License.maximumStringBytes else {
            throw .malformed("the license is longer than 8 KiB (\(string.utf8.count) bytes); a real one has a few hundred characters")
        }
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        var bytes = Array(string.utf8)[...]
        while let first = bytes.first, isSpace(first) { bytes.removeFirst() }
        while let last = bytes.last, isSpace(last) { bytes.removeLast() }
        guard !bytes.isEmpty else { throw .malformed("the license is empty") }
        guard bytes.starts(with: (License.formatTag + ".").utf8) else {
            throw .malformed("a license starts with \"\(License.formatTag).\"; check that the whole string was copied")
        }
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw .malformed("expected 3 parts separated by dots (\(License.formatTag).<payload>.<signature>), found \(parts.count)")
        }
        let payload = try decode(parts[1], part: "payload")
        let signature = try decode(parts[2], part: "signature")
        guard signature.count == Int(crypto_sign_BYTES) else {
            throw .malformed("the signature part holds \(signature.count) bytes instead of \(crypto_sign_BYTES)")
        }
        return (payload, signature)
    }

    /// Canonical unpadded base64url only, so that each license has exactly one spelling.
    private static func decode(_ part: ArraySlice<UInt8>, part name: String) throws(LicenseError) -> [UInt8] {
        guard !part.isEmpty else { throw .malformed("the \(name) part is empty") }
        let alphabet: (UInt8) -> Bool = { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"):
                true
            default: false
            }
        }
        let text = String(decoding: part, as: UTF8.self)
        guard part.allSatisfy(alphabet), let bytes = ByteEncoding.fromBase64URL(text), ByteEncoding.base64URL(bytes) == text else {
            throw .malformed("the \(name) part is not base64url (letters, digits, '-' and '_', without padding)")
        }
        return bytes
    }
}
