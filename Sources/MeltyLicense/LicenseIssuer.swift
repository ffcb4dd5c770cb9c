import CSodium
import Foundation
import MeltyEd25519

/// Why a signing key could not be made or read, or a license could not be issued.
public struct LicenseIssuerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong and what to do about it.
    public let description: String

    /// An error saying `description`.
    public init(_ description: String) {
        self.description = description
    }
}

/// Signing licenses: the vendor's `meltybase license issue` and the kernel's own evaluation
/// licenses both sign here (key generation is vendor tooling, in `MeltyVendorTools`).
///
/// The secret key lives in one file holding libsodium's 64-byte Ed25519 secret key (seed
/// followed by public key) as 128 lowercase hex characters on a single line, mode 0600.
/// Secret bytes are read and written through byte buffers that are wiped after use
/// (Swift strings cannot be wiped, so the hex never becomes a `String`).
public enum LicenseIssuer {
    /// Name of the secret key file `generateKeyFiles` writes (mode 0600).
    public static let secretKeyFileName = "license-signing.key"
    /// Name of the public key file `generateKeyFiles` writes (mode 0644).
    public static let publicKeyFileName = "license-signing.pub"

    /// Signs a new license with the key in `secretKeyFile` and returns the license string
    /// (`MB1.<payload>.<signature>`). The id is a fresh UUID and `issued_at` is `now`.
    /// Refuses a key file readable by anyone but its owner, invalid fields, and an expiry
    /// that is not in the future.
    public static func issue(
        secretKeyFile: String, ownerEmail: String, ownerName: String = "", tier: License.Tier, seats: Int,
        expiresAt: Date? = nil, instance: String? = nil, now: Date = Date()
    ) throws(LicenseIssuerError) -> String {
        if let expiresAt, expiresAt <= now {
            throw LicenseIssuerError("the expiry \(License.formatTimestamp(expiresAt)) is not in the future")
        }
        let license: License
        do {
            license = try License(ownerName: ownerName, ownerEmail: ownerEmail, tier: tier, seats: seats, issuedAt: now, expiresAt: expiresAt, instance: instance)
        } catch {
            if case .malformed(let problem) = error { throw LicenseIssuerError("cannot issue the license: \(problem)") }
            throw LicenseIssuerError("cannot issue the license: \(error)")
        }
        var secretKey = try readSecretKey(file: secretKeyFile)
        defer { Ed25519.wipe(&secretKey) }
        return try sign(license, secretKey: secretKey)
    }

    /// The license string for `license`, signed with a 64-byte libsodium secret key. The
    /// result is verified with the key's public half before it is returned, so the issuer
    /// never hands out a license the kernel would refuse for its form or signature.
    public static func sign(_ license: License, secretKey: [UInt8]) throws(LicenseIssuerError) -> String {
        guard let publicKey = publicKey(ofSecretKey: secretKey) else {
            throw LicenseIssuerError("the secret key is damaged: its public half does not match its seed")
        }
        let payload = license.canonicalPayload
        let signature: [UInt8]
        do {
            signature = try Ed25519.sign(payload, secretKey: secretKey)
        } catch {
            throw LicenseIssuerError("cannot sign: \(error)")
        }
        let string = "\(License.formatTag).\(ByteEncoding.base64URL(payload)).\(ByteEncoding.base64URL(signature))"
        do {
            let check = try LicenseVerifier(publicKey: publicKey).verifyIgnoringInstanceBinding(string, now: license.issuedAt)
            guard check == license else { throw LicenseError.malformed("the decoded license differs from the signed one") }
        } catch {
            throw LicenseIssuerError("the signed license does not verify (\(error)); nothing was issued")
        }
        return string
    }

    /// The 64-byte secret key in `file`. The caller wipes it with ``Ed25519/wipe(_:)``.
    public static func readSecretKey(file: String) throws(LicenseIssuerError) -> [UInt8] {
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw LicenseIssuerError("cannot open the key file \(file): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        // fstat on the open descriptor: the mode checked is the mode of the file read.
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else {
            throw LicenseIssuerError("the key file \(file) is not a regular file")
        }
        let mode = status.st_mode & 0o7777
        guard mode & ~0o600 == 0 else {
            let publicHint = file.hasSuffix(".pub") ? " (this looks like the public key; pass \(secretKeyFileName))" : ""
            throw LicenseIssuerError(
                "the key file \(file) has mode \(String(format: "%04o", mode)); a license signing key must be readable by its owner only (0600): run chmod 600 \(file)\(publicHint)"
            )
        }

        let notAKey =
            "\(file) is not a license signing key: expected the 128 hex characters of a libsodium Ed25519 secret key on one line, as written by `meltybase license keygen`"
        let capacity = 1024
        var buffer = [UInt8](repeating: 0, count: capacity + 1)
        defer { Ed25519.wipe(&buffer) }
        var length = 0
        while length <= capacity {
            let count = buffer.withUnsafeMutableBytes { raw in raw.baseAddress.map { read(descriptor, $0 + length, capacity + 1 - length) } ?? -1 }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw LicenseIssuerError("cannot read the key file \(file): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            length += count
        }
        guard length <= capacity else { throw LicenseIssuerError(notAKey) }
        var end = length
        while end > 0, [0x20, 0x09, 0x0A, 0x0D].contains(buffer[end - 1]) { end -= 1 }
        let hexLength = 2 * Int(crypto_sign_SECRETKEYBYTES)
        guard end == hexLength else {
            if end == 2 * Int(crypto_sign_PUBLICKEYBYTES) {
                throw LicenseIssuerError("\(file) holds 64 hex characters, the size of a public key; pass the secret key file \(secretKeyFileName)")
            }
            throw LicenseIssuerError(notAKey)
        }
        guard var key = ByteEncoding.bytes(fromHex: buffer[0..<end]) else { throw LicenseIssuerError(notAKey) }
        guard publicKey(ofSecretKey: key) != nil else {
            Ed25519.wipe(&key)
            throw LicenseIssuerError("the key file \(file) is damaged: its public half does not match its seed")
        }
        return key
    }

    /// The public key derived from the seed of `secretKey`, or nil when that differs from
    /// the public half stored in it (a damaged key would sign licenses nothing verifies).
    private static func publicKey(ofSecretKey secretKey: [UInt8]) -> [UInt8]? {
        guard secretKey.count == Int(crypto_sign_SECRETKEYBYTES), Ed25519.initialized else { return nil }
        var seed = [UInt8](repeating: 0, count: Int(crypto_sign_SEEDBYTES))
        var derivedSecret = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        var derivedPublic = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        defer {
            Ed25519.wipe(&seed)
            Ed25519.wipe(&derivedSecret)
        }
        crypto_sign_ed25519_sk_to_seed(&seed, secretKey)
        crypto_sign_seed_keypair(&derivedPublic, &derivedSecret, seed)
        guard Array(secretKey[Int(crypto_sign_SEEDBYTES)...]) == derivedPublic else { return nil }
        return derivedPublic
    }
}
