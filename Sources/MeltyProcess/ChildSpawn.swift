import Foundation

/// Starts child processes (the supervisor's kernel worker and watchdog, the Edge plugin's
/// Deno workers) with `posix_spawn`, so that exactly the descriptors named here cross into
/// the child.
///
/// Foundation's `Process` cannot hand over extra descriptors, and the caller's
/// descriptors are all close-on-exec. The child gets: `stdin` as given (or /dev/null),
/// `stdout` as given (or shared with the supervisor), `stderr` as given, and `descriptors[i]` as
/// descriptor `3 + i`. It starts in its own process group (a terminal's Ctrl-C reaches
/// the supervisor, which decides), with no blocked signals and default dispositions for
/// the shutdown signals (the supervisor's threads block or trap them, and a child would
/// inherit that).
public enum ChildSpawn {
    /// Spawns `executable` and returns its pid, or throws naming the reason.
    public static func spawn(
        executable: String, arguments: [String], environment: [String: String],
        stdin: CInt? = nil, stdout: CInt? = nil, stderr: CInt? = nil, descriptors: [CInt] = []
    ) throws -> pid_t {
        // Copies numbered above every target, so no dup2 has source == target (which
        // would leave close-on-exec set on it).
        var copies: [CInt] = []
        defer { for copy in copies { close(copy) } }
        for descriptor in [stdin ?? -1, stdout ?? -1, stderr ?? -1] + descriptors where descriptor >= 0 {
            let copy = fcntl(descriptor, F_DUPFD_CLOEXEC, 64)
            guard copy >= 0 else { throw ChildSpawnError(executable: executable, reason: String(cString: strerror(errno))) }
            copies.append(copy)
        }
        var copyIndex = 0
        func nextCopy() -> CInt {
            defer { copyIndex += 1 }
            return copies[copyIndex]
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdin != nil {
            posix_spawn_file_actions_adddup2(&actions, nextCopy(), 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if stdout != nil { posix_spawn_file_actions_adddup2(&actions, nextCopy(), 1) }
        if stderr != nil { posix_spawn_file_actions_adddup2(&actions, nextCopy(), 2) }
        for index in descriptors.indices { posix_spawn_file_actions_adddup2(&actions, nextCopy(), 3 + CInt(index)) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw ChildSpawnError(executable: executable, reason: String(cString: strerror(result))) }
        return pid
    }

    /// `name` itself when it contains a "/" and is executable, else the first executable
    /// `name` in the folders of `PATH` (this process's, by default); nil when there is none.
    public static func executable(named name: String, path: String? = nil) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let folders = (path ?? ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":")
        return folders.lazy.filter { !$0.isEmpty }.map { "\($0)/\(name)" }.first(where: FileManager.default.isExecutableFile(atPath:))
    }

    /// A connected pair of close-on-exec descriptors used as a pipe (`pipe2` is not
    /// visible to Swift; `socketpair` sets close-on-exec atomically, so no child spawned
    /// meanwhile by another thread inherits either end). EOF on one end once every copy of
    /// the other is closed.
    public static func pipe() throws -> (read: CInt, write: CInt) {
        var ends: [CInt] = [-1, -1]
        guard socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw ChildSpawnError(executable: "socketpair", reason: String(cString: strerror(errno)))
        }
        return (ends[0], ends[1])
    }

    /// `waitpid` for `pid`, retried on EINTR; the raw status, or nil when there is no such child.
    public static func wait(for pid: pid_t, options: CInt = 0) -> CInt? {
        var status: CInt = 0
        while true {
            let result = waitpid(pid, &status, options)
            if result == pid { return status }
            if result == 0 { return nil }  // WNOHANG: still running.
            if errno != EINTR { return nil }
        }
    }
}

/// A child process could not be started: which executable and why (`strerror`).
public struct ChildSpawnError: Error, CustomStringConvertible {
    /// The program that was to run.
    public let executable: String
    /// The system's reason.
    public let reason: String

    /// The message.
    public var description: String { "cannot start \(executable): \(reason)" }
}
