import Foundation

/// The byte layout of everything the Vault encrypts, and the additional authenticated
/// data (AAD) that ties a ciphertext to its place.
///
/// Sealed record: `0x01 | nonce (12) | ciphertext | tag (16)`. The nonce is fresh random
/// bytes for every encryption. AAD is length-prefixed fields, so no two different
/// (portal, name, version) triples share an AAD.
public enum Envelope {
    /// Format byte of records written by this version.
    public static let format: UInt8 = 1
    /// Bytes a sealed record adds to its plaintext.
    public static let overhead = 1 + AESGCM.nonceLength + AESGCM.tagLength

    /// Encrypts `plaintext` under `key` with a fresh nonce.
    public static func seal(key: SecretBytes, plaintext: UnsafeRawBufferPointer, aad: [UInt8]) throws -> [UInt8] {
        let nonce = VaultCrypto.randomBytes(AESGCM.nonceLength)
        let sealed = try key.withUnsafeBytes { (keyBytes) in
            try AESGCM.seal(key: keyBytes, nonce: nonce, plaintext: plaintext, aad: aad)
        }
        var record = [UInt8]()
        record.reserveCapacity(overhead + plaintext.count)
        record.append(format)
        record += nonce
        record += sealed.ciphertext
        record += sealed.tag
        return record
    }

    /// Decrypts a sealed record; ``VaultError/authenticationFailed`` unless key, record
    /// and `aad` are exactly those it was sealed with.
    public static func open(key: SecretBytes, record: [UInt8], aad: [UInt8]) throws -> SecretBytes {
        guard record.count >= overhead else {
            throw VaultError.corruptRecord("sealed record is \(record.count) bytes, shorter than the \(overhead)-byte envelope")
        }
        guard record[0] == format else {
            throw VaultError.corruptRecord("sealed record has format \(record[0]); this Vault reads format \(format)")
        }
        let nonce = Array(record[1..<(1 + AESGCM.nonceLength)])
        let tag = Array(record[(record.count - AESGCM.tagLength)...])
        return try record.withUnsafeBytes { (all) in
            let ciphertext = UnsafeRawBufferPointer(rebasing: all[(1 + AESGCM.nonceLength)..<(record.count - AESGCM.tagLength)])
            return try key.withUnsafeBytes { (keyBytes) in
                try AESGCM.open(key: keyBytes, nonce: nonce, ciphertext: ciphertext, tag: tag, aad: aad)
            }
        }
    }

    /// AAD of a secret value: binds portal, secret name and version.
    public static func secretAAD(portal: String, name: String, version: Int) -> [UInt8] {
        var aad = Array("meltybase.vault.secret.v1".utf8)
        append(portal, to: &aad)
        append(name, to: &aad)
        withUnsafeBytes(of: UInt64(version).bigEndian) { aad += $0 }
        return aad
    }

    /// AAD of a wrapped data key: binds portal and data key id, so a wrapped key copied to
    /// another portal's row does not unwrap.
    public static func dataKeyAAD(portal: String, dataKeyID: String) -> [UInt8] {
        var aad = Array("meltybase.vault.data-key.v1".utf8)
        append(portal, to: &aad)
        append(dataKeyID, to: &aad)
        return aad
    }

    private static func append(_ field: String, to aad: inout [UInt8]) {
        let bytes = Array(field.utf8)
        withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { aad += $0 }
        aad += bytes
    }
}

/// Validation of what callers name and store.
public enum SecretRules {
    /// Longest secret name.
    public static let maxNameLength = 128
    /// Longest description.
    public static let maxDescriptionLength = 1024

    /// Throws unless `name` is 1–128 characters of `A-Z a-z 0-9 _ . -` (and not `.`/`..`).
    public static func validate(name: String) throws {
        let bytes = Array(name.utf8)
        let allowed = bytes.allSatisfy { byte in
            (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || (byte >= 48 && byte <= 57) || byte == 95 || byte == 46 || byte == 45
        }
        guard !bytes.isEmpty, bytes.count <= maxNameLength, allowed, name != ".", name != ".." else {
            throw VaultError.invalidArgument(
                "secret names are 1 to \(maxNameLength) characters of A-Z, a-z, 0-9, '_', '.' and '-' (found \(bytes.count) characters\(allowed ? "" : " with others"))")
        }
    }

    /// Throws unless the value is 1 byte to `maxBytes`.
    public static func validate(valueLength: Int, maxBytes: Int) throws {
        guard valueLength > 0 else { throw VaultError.invalidArgument("a secret value must not be empty") }
        guard valueLength <= maxBytes else {
            throw VaultError.invalidArgument("a secret value is at most \(maxBytes) bytes, this one is \(valueLength) bytes")
        }
    }

    /// Versions are Postgres `integer`s counted from 1.
    public static let maxVersion = Int(Int32.max)

    /// Throws unless `version` is 1 to ``maxVersion`` (a larger one would reach Postgres
    /// as an out-of-range `integer` and fail there).
    public static func validate(version: Int) throws {
        guard (1...maxVersion).contains(version) else {
            throw VaultError.invalidArgument("version must be a whole number from 1 to \(maxVersion)")
        }
    }

    /// Throws for a description longer than 1024 characters or holding a NUL character
    /// (Postgres would store the text cut at the NUL, so what was sent is not what is kept).
    public static func validate(description: String?) throws {
        guard let description else { return }
        guard description.count <= maxDescriptionLength else {
            throw VaultError.invalidArgument("a description is at most \(maxDescriptionLength) characters")
        }
        guard !description.utf8.contains(0) else {
            throw VaultError.invalidArgument("a description must not contain a NUL character (\\u0000)")
        }
    }
}
