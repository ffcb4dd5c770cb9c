import Foundation
import MeltyProcess

/// A small `/bin/sh` process that stops the embedded Postgres and Redis if the supervisor
/// dies without stopping them (`kill -9`, the OOM killer).
///
/// Postgres and Redis do not notice their parent's death. The watchdog reads the
/// supervisor's lifeline pipe, whose only write end the supervisor holds: the read ends
/// at EOF when the supervisor is gone, however it went. Then it asks Postgres for a fast
/// shutdown (SIGINT to the pid in `postmaster.pid`: active transactions roll back, data is
/// flushed) and kills redis-server (it keeps nothing on disk). On a normal shutdown the
/// supervisor kills the watchdog first and stops both services itself.
final class EmbeddedServicesWatchdog: Sendable {
    private let pid: pid_t

    /// The watchdog's script: `$1` is Postgres's pid file, `$2` Redis's (either may be empty).
    static let script = """
        while read -r _; do :; done
        if [ -n "$1" ] && { read -r pid < "$1"; } 2>/dev/null && [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null; fi
        if [ -n "$2" ] && { read -r pid < "$2"; } 2>/dev/null && [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null; fi
        """

    /// Starts the watchdog reading `lifeline` (a read end of the lifeline pipe).
    init(lifeline: CInt, postgresPIDFile: String?, redisPIDFile: String?) throws {
        do {
            pid = try ChildSpawn.spawn(
                executable: "/bin/sh", arguments: ["-c", Self.script, "meltybase-watchdog", postgresPIDFile ?? "", redisPIDFile ?? ""],
                environment: ["PATH": "/usr/bin:/bin"], stdin: lifeline)
        } catch let error as ChildSpawnError {
            throw SupervisorError(error)
        }
    }

    /// Ends the watchdog (the supervisor stops the services itself).
    func stop() {
        kill(pid, SIGKILL)
        _ = ChildSpawn.wait(for: pid)
    }
}
