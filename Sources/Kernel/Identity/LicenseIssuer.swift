import CSodium
import Foundation

/// Why a signing key could not be made or read, or a license could not be issued.
public struct LicenseIssuerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong and what to do about it.
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Vendor tooling: the license signing key pair and the licenses it signs.
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

    /// Where `generateKeyFiles` put the key pair.
    public struct KeyFiles: Sendable, Equatable {
        /// Path of the secret key file.
        public var secretKeyPath: String
        /// Path of the public key file.
        public var publicKeyPath: String
        /// The public key as 64 hex characters, the value of `[license] public_key`.
        public var publicKeyHex: String
    }

    /// Creates a new key pair in `directory` (created with mode 0700 if missing). Refuses
    /// when either file already exists: a signing key is never overwritten.
    public static func generateKeyFiles(directory: String) throws(LicenseIssuerError) -> KeyFiles {
        let secretPath = (directory as NSString).appendingPathComponent(secretKeyFileName)
        let publicPath = (directory as NSString).appendingPathComponent(publicKeyFileName)
        var status = stat()
        for path in [secretPath, publicPath] where lstat(path, &status) == 0 {
            throw LicenseIssuerError("\(path) already exists; keygen never overwrites a key: move the old pair away or choose another --out directory")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw LicenseIssuerError("cannot create the directory \(directory): \(error.localizedDescription)")
        }

        var pair = Ed25519.generate()
        defer { Ed25519.wipe(&pair.secretKey) }
        var secretLine = hexLine(pair.secretKey)
        defer { Ed25519.wipe(&secretLine) }
        try createFile(secretPath, contents: secretLine, mode: 0o600)
        do {
            try createFile(publicPath, contents: hexLine(pair.publicKey), mode: 0o644)
        } catch {
            unlink(secretPath)
            throw error
        }
        return KeyFiles(secretKeyPath: secretPath, publicKeyPath: publicPath, publicKeyHex: ByteEncoding.hex(pair.publicKey))
    }

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
    static func readSecretKey(file: String) throws(LicenseIssuerError) -> [UInt8] {
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
            throw LicenseIssuerError("the key file \(file) has mode \(String(format: "%04o", mode)); a license signing key must be readable by its owner only (0600): run chmod 600 \(file)\(publicHint)")
        }

        let notAKey = "\(file) is not a license signing key: expected the 128 hex characters of a libsodium Ed25519 secret key on one line, as written by `meltybase license keygen`"
        let capacity = 1024
        var buffer = [UInt8](repeating: 0, count: capacity + 1)
        defer { Ed25519.wipe(&buffer) }
        var length = 0
        while length <= capacity {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + length, capacity + 1 - length) }
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
        guard var key = bytes(fromHex: buffer[0..<end]) else { throw LicenseIssuerError(notAKey) }
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

    /// Creates `path` exclusively (never following or replacing anything) with `mode`
    /// regardless of the umask, writes `contents` and flushes it to disk.
    private static func createFile(_ path: String, contents: [UInt8], mode: mode_t) throws(LicenseIssuerError) {
        do throws(ExclusiveFile.Failure) {
            try ExclusiveFile.create(path, contents: contents, mode: mode, sync: true)
        } catch {
            let reason = error.exists ? "it already exists; keygen never overwrites a key" : error.reason
            throw LicenseIssuerError("cannot \(error.atCreate ? "create" : "write") \(path): \(reason)")
        }
    }

    /// Lowercase hex of `bytes` and a newline, built without an intermediate `String`.
    private static func hexLine(_ bytes: [UInt8]) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        var line = [UInt8](repeating: 0, count: bytes.count * 2 + 1)
        for (index, byte) in bytes.enumerated() {
            line[2 * index] = digits[Int(byte >> 4)]
            line[2 * index + 1] = digits[Int(byte & 0x0F)]
        }
        line[line.count - 1] = UInt8(ascii: "\n")
        return line
    }

    /// Bytes of hex digits (either case), or nil. Like ``ByteEncoding/fromHex(_:)`` but on
    /// bytes, so secret material never becomes a `String`.
    private static func bytes(fromHex hex: ArraySlice<UInt8>) -> [UInt8]? {
        guard hex.count % 2 == 0 else { return nil }
        func nibble(_ character: UInt8) -> UInt8? {
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var output = [UInt8](repeating: 0, count: hex.count / 2)
        var index = hex.startIndex
        while index < hex.endIndex {
            guard let high = nibble(hex[index]), let low = nibble(hex[index + 1]) else {
                Ed25519.wipe(&output)
                return nil
            }
            output[(index - hex.startIndex) / 2] = high << 4 | low
            index += 2
        }
        return output
    }
}
