import Foundation

/// Creates files that must never replace or follow anything: key files and certificates.
enum ExclusiveFile {
    /// Why a file could not be created or written.
    struct Failure: Error {
        /// True when `open` failed (the file may exist), false when writing failed.
        let atCreate: Bool
        /// Whether the path already existed.
        let exists: Bool
        /// `strerror` of the failing call.
        let reason: String
    }

    /// Creates `path` with `O_EXCL | O_NOFOLLOW`, sets `mode` regardless of the umask, writes
    /// `contents` and (when `sync`) flushes it to disk. A failed write removes the file.
    static func create(_ path: String, contents: [UInt8], mode: mode_t, sync: Bool = false) throws(Failure) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw Failure(atCreate: true, exists: errno == EEXIST, reason: String(cString: strerror(errno)))
        }
        var failure: String?
        if fchmod(descriptor, mode) != 0 { failure = String(cString: strerror(errno)) }
        var written = 0
        while failure == nil && written < contents.count {
            let count = contents.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, contents.count - written) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { failure = String(cString: strerror(errno)) } else { written += count }
        }
        if sync && failure == nil && fsync(descriptor) != 0 { failure = String(cString: strerror(errno)) }
        close(descriptor)
        if let failure {
            unlink(path)
            throw Failure(atCreate: false, exists: false, reason: failure)
        }
    }
}
