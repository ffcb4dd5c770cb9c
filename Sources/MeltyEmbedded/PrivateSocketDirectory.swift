import Foundation

/// Where the embedded servers' unix sockets go when the data directory's path is too long
/// for a socket address (108 bytes on Linux): a folder that only the kernel (and, as root,
/// the Postgres account) can enter, never a guessable name in a shared folder.
///
/// The fallback is `/run/meltybase/<hash>` as root and `<tmp>/meltybase-<uid>/<hash>`
/// otherwise, named after the data directory so the CLI finds a running kernel's sockets.
/// Each folder on the way is created with mode 0700 (0711 for the root-owned parent the
/// Postgres account passes through), and an existing one is used only when it is a real
/// directory (not a symbolic link) owned by the expected user with no group or other write
/// access; otherwise the kernel refuses to start and says which folder to remove.
enum PrivateSocketDirectory {
    /// The fallback folder for `key` (a data or cluster directory), as a path.
    static func fallback(for key: String, name: String) -> String {
        let base = getuid() == 0 ? "/run/meltybase" : (NSTemporaryDirectory() as NSString).appendingPathComponent("meltybase-\(getuid())")
        return base + "/\(name)-\(StableHash.hex(key).prefix(16))"
    }

    /// Creates `path`'s parent (0711, ours) and `path` (0700), or checks existing ones.
    /// `owner` is who must own `path` itself (the Postgres account when it runs as one).
    static func prepare(_ path: String, owner: uid_t = getuid()) throws {
        let parent = (path as NSString).deletingLastPathComponent
        try ensure(parent, mode: 0o711, owners: [getuid()])
        try ensure(path, mode: 0o700, owners: [getuid(), owner])
    }

    private static func ensure(_ path: String, mode: mode_t, owners: Set<uid_t>) throws {
        if mkdir(path, mode) == 0 {
            _ = chmod(path, mode)  // mkdir applies the umask
            return
        }
        guard errno == EEXIST else {
            throw EmbeddedServiceError(
                "cannot create the socket folder \(path): \(String(cString: strerror(errno)))",
                hint: "use a shorter data directory path (under 80 characters) so sockets stay inside it")
        }
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, owners.contains(info.st_uid), info.st_mode & 0o022 == 0 else {
            throw EmbeddedServiceError(
                "the socket folder \(path) exists but is not private to this kernel (a symbolic link, another owner, or writable by others)",
                hint: "remove \(path) if nothing of yours uses it, or use a shorter data directory path (under 80 characters) so sockets stay inside it")
        }
    }
}
