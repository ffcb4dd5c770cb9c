import Foundation

/// One 256-bit master key and its public id (the first 8 bytes of a SHA-256 over a
/// domain label and the key, in hex), which is stored beside every data key it wraps.
public final class MasterKey: Sendable {
    /// Public identifier, safe to log and store.
    public let id: String
    /// The key, locked in memory and wiped on release.
    public let bytes: SecretBytes

    /// A master key from 32 bytes (the caller wipes its copy).
    public init(bytes raw: [UInt8]) throws {
        guard raw.count == AESGCM.keyLength else {
            throw VaultError.invalidConfiguration("a master key must be 32 bytes, got \(raw.count)")
        }
        guard raw.contains(where: { $0 != 0 }) else {
            throw VaultError.invalidConfiguration("the master key is all zeros; generate one with `openssl rand -hex 32`")
        }
        bytes = SecretBytes(copying: raw, lockedInMemory: true)
        var labelled = Array("meltybase.vault.master-key-id\u{0}".utf8) + raw
        defer { SecretBytes.wipe(&labelled) }
        id = VaultCrypto.hex(labelled.withUnsafeBytes { VaultCrypto.sha256($0) }.prefix(8))
    }

    /// Parses 64 hex characters (surrounding whitespace ignored). `source` names where the
    /// text came from in the error; the text itself is never repeated.
    public static func parse(hex text: String, source: String) throws -> MasterKey {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count == 64 else {
            throw VaultError.invalidConfiguration(
                "\(source) must be 64 hex characters (32 bytes), found \(trimmed.utf8.count) characters; generate one with `openssl rand -hex 32`")
        }
        if let position = trimmed.utf8.firstIndex(where: { !isHexDigit($0) }) {
            let offset = trimmed.utf8.distance(from: trimmed.utf8.startIndex, to: position)
            throw VaultError.invalidConfiguration("\(source) is not hex: character \(offset + 1) is not 0-9, a-f or A-F")
        }
        guard var raw = VaultCrypto.fromHex(trimmed) else {
            throw VaultError.invalidConfiguration("\(source) is not valid hex")
        }
        defer { SecretBytes.wipe(&raw) }
        do {
            return try MasterKey(bytes: raw)
        } catch {
            throw VaultError.invalidConfiguration("\(source): \(error)")
        }
    }

    /// Reads a key file: 64 hex characters, mode 0600 or stricter, a regular file.
    public static func load(file path: String, source: String) throws -> MasterKey {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw VaultError.invalidConfiguration("\(source) \(path) cannot be read: \(String(cString: strerror(errno)))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw VaultError.invalidConfiguration("\(source) \(path) is not a regular file")
        }
        let mode = status.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw VaultError.invalidConfiguration(
                "\(source) \(path) has mode \(String(mode, radix: 8)); the master key file must be readable by its owner only (chmod 600 \(path))")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VaultError.invalidConfiguration("\(source) \(path) cannot be read")
        }
        var bytes = [UInt8](data)
        defer { SecretBytes.wipe(&bytes) }
        return try parse(hex: String(decoding: bytes, as: UTF8.self), source: "\(source) \(path)")
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= 48 && byte <= 57) || (byte >= 97 && byte <= 102) || (byte >= 65 && byte <= 70)
    }
}

/// The master keys a process holds: the current one (wraps new and re-wrapped data keys)
/// and, during a rotation, previous ones (only unwrap).
public struct MasterKeyRing: Sendable {
    /// Wraps every data key written from now on.
    public let current: MasterKey
    /// Accepted for unwrapping only.
    public let previous: [MasterKey]

    /// A ring; duplicate previous keys (same id as current) are dropped.
    public init(current: MasterKey, previous: [MasterKey] = []) {
        self.current = current
        self.previous = previous.filter { $0.id != current.id }
    }

    /// The key with `id`, if this ring holds it.
    public func key(id: String) -> MasterKey? {
        id == current.id ? current : previous.first { $0.id == id }
    }

    /// Every id, current first.
    public var ids: [String] { [current.id] + previous.map(\.id) }
}
