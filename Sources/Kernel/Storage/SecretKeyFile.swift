import CSodium
import Foundation
import MeltyEd25519

/// A file holding a random key as hex, readable by its owner only.
enum SecretKeyFile {
    /// Why the key file could not be read or created; says what to do.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The key in `path`, creating `length` random bytes there (mode 0600) when missing.
    /// Concurrent creators agree: the file is written aside and linked into place.
    /// `generate` makes the new key (random bytes by default).
    static func loadOrCreate(path: String, length: Int, purpose: String, generate: (() -> [UInt8])? = nil) throws(Failure) -> [UInt8] {
        if let existing = try load(path: path, length: length, purpose: purpose) { return existing }
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        } catch {
            throw Failure(description: "cannot create \(directory): \(error)")
        }
        _ = Ed25519.initialized
        var key: [UInt8]
        if let generate {
            key = generate()
        } else {
            key = [UInt8](repeating: 0, count: length)
            randombytes_buf(&key, key.count)
        }
        var text = Array((ByteEncoding.hex(key) + "\n").utf8)
        defer { Ed25519.wipe(&text) }
        let temporary = path + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw Failure(description: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let written = write(descriptor, text, text.count)
        let synced = fsync(descriptor)
        close(descriptor)
        defer { unlink(temporary) }
        guard written == text.count, synced == 0 else { throw Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        if link(temporary, path) != 0 {
            guard errno == EEXIST, let winner = try load(path: path, length: length, purpose: purpose) else {
                throw Failure(description: "cannot create \(path): \(String(cString: strerror(errno)))")
            }
            Ed25519.wipe(&key)
            return winner
        }
        return key
    }

    private static func load(path: String, length: Int, purpose: String) throws(Failure) -> [UInt8]? {
        var status = stat()
        guard stat(path, &status) == 0 else {
            if errno == ENOENT { return nil }
            throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        let mode = status.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw Failure(description: "\(path) has mode \(String(mode, radix: 8)); \(purpose) must be readable by its owner only (chmod 600 \(path))")
        }
        guard var data = FileManager.default.contents(atPath: path) else { throw Failure(description: "cannot read \(path)") }
        defer { data.resetBytes(in: 0..<data.count) }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let key = ByteEncoding.fromHex(text), key.count == length else {
            throw Failure(description: "\(path) does not hold \(purpose): \(length) bytes in hex")
        }
        return key
    }
}
