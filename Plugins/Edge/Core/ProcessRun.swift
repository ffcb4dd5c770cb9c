import Foundation
import MeltyProcess
import Synchronization

/// Runs a one-off command (`deno check`) without holding a thread of the async executor:
/// the child is spawned with ``ChildSpawn`` (its own process group), a dedicated thread
/// reads its stderr to EOF and reaps it, and the caller's task waits on a continuation.
/// A timeout or the task's cancellation kills the whole group.
enum ProcessRun {
    /// How a run ended.
    struct Outcome: Sendable {
        /// The exit status, or nil when a signal ended the child.
        var exitStatus: Int32?
        /// What the child wrote to stderr (at most ``maxOutput`` bytes are kept).
        var output: [UInt8]
        /// Whether the timeout killed it.
        var timedOut: Bool
        /// Whether the caller's cancellation killed it.
        var cancelled: Bool
    }

    /// The most stderr bytes kept; the rest is read and dropped so the child never blocks.
    static let maxOutput = 1 << 20

    /// The child's pid, and whether it was reaped; `kill` happens only before reaping (under
    /// the lock), so a pid reused by another process is never signalled.
    private struct State {
        var reaped = false
        var timedOut = false
        var cancelled = false
    }

    /// Runs `executable` with `arguments` and exactly `environment`; stdin is /dev/null,
    /// stdout is shared with this process, stderr is captured.
    static func run(executable: String, arguments: [String], environment: [String: String], timeout: Duration) async throws -> Outcome {
        let pipe = try ChildSpawn.pipe()
        let pid: pid_t
        do {
            pid = try ChildSpawn.spawn(executable: executable, arguments: arguments, environment: environment, stderr: pipe.write)
        } catch {
            close(pipe.read)
            close(pipe.write)
            throw error
        }
        close(pipe.write)
        let state = Mutex(State())
        @Sendable func kill(timedOut: Bool) {
            state.withLock { state in
                guard !state.reaped else { return }
                if timedOut { state.timedOut = true } else { state.cancelled = true }
                _ = Glibc.kill(-pid, SIGKILL)
            }
        }
        let reader = pipe.read
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
                let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
                // After the child is reaped this does nothing (``kill`` checks).
                DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { kill(timedOut: true) }
                let thread = Thread {
                    var output: [UInt8] = []
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let count = buffer.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                        if count < 0, errno == EINTR { continue }
                        if count <= 0 { break }
                        if output.count < maxOutput { output.append(contentsOf: buffer[0..<min(count, maxOutput - output.count)]) }
                    }
                    close(reader)
                    // Wait without reaping, mark reaped under the lock, then reap: a kill
                    // racing with the exit still targets our (zombie) child.
                    var info = siginfo_t()
                    while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0, errno == EINTR {}
                    let flags = state.withLock { state in
                        state.reaped = true
                        return (state.timedOut, state.cancelled)
                    }
                    let status = ChildSpawn.wait(for: pid) ?? -1
                    let exited = status & 0x7f == 0
                    continuation.resume(
                        returning: Outcome(exitStatus: exited ? (status >> 8) & 0xff : nil, output: output, timedOut: flags.0, cancelled: flags.1))
                }
                thread.name = "edge-deploy-check"
                thread.start()
            }
        } onCancel: {
            kill(timedOut: false)
        }
    }
}
