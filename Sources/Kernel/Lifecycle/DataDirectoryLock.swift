import Foundation
import MeltyEmbedded

/// An exclusive lock on the data directory held by `meltybase serve` for its lifetime.
///
/// Two kernels on one embedded cluster would fight over its Postgres; the lock (an
/// `flock` that dies with the process, also under `kill -9`) makes the second one stop
/// with a clear message, and lets commands like `meltybase portal` know a kernel is up.
final class DataDirectoryLock: Sendable {
    private let descriptor: Int32

    /// Takes the lock or throws naming the holder.
    init(dataDirectory: String) throws {
        let path = dataDirectory + "/kernel.lock"
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw EmbeddedServiceError("cannot open \(path): \(String(cString: strerror(errno)))", hint: "check the data directory's permissions")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(descriptor)
            throw EmbeddedServiceError(
                "another meltybase serve (pid \(holder)) already uses the data directory \(dataDirectory)",
                hint: "stop it first, or pass a different --data-dir")
        }
        ftruncate(descriptor, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(descriptor, $0, strlen($0)) }
    }

    /// Whether some process holds the lock on `dataDirectory` right now.
    static func isHeld(dataDirectory: String) -> Bool {
        let descriptor = open(dataDirectory + "/kernel.lock", O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        if flock(descriptor, LOCK_EX | LOCK_NB) == 0 {
            flock(descriptor, LOCK_UN)
            return false
        }
        return true
    }

    deinit { close(descriptor) }
}
