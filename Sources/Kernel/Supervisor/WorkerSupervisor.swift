import Foundation
import Logging
import MeltyEmbedded
import MeltyProcess
import NIOConcurrencyHelpers

/// Runs the kernel worker process and restarts it at once when it dies.
///
/// One dedicated thread spawns the worker and blocks in `waitpid` on it (never the async
/// executor). A death is logged with the exit status or signal and, for a fault, the
/// plugin innermost in the crash report's stack; restarts back off in a crash loop
/// (`RestartBackoff`). `stop` forwards a signal and ends the loop once the worker exits.
final class WorkerSupervisor: Sendable {
    /// How supervision ended.
    enum Outcome: Sendable {
        /// `stop` was called and the worker has exited.
        case stopped
        /// The first worker exited with `WorkerHandoff.startFailureExitCode`.
        case couldNotStart(String)
    }

    private struct Running: Sendable {
        let pid: pid_t
        let output: WorkerOutput
        let startedAt: Date
    }

    private let executable: String
    private let arguments: [String]
    private let environment: [String: String]
    /// Lifeline read end, then the listening sockets (become 3, 4, ... in the worker).
    private let descriptors: [CInt]
    private let crashReport: CrashReport
    private let logger: Logger
    private let onFinish: @Sendable (Outcome) -> Void
    private let state = NIOLockedValueBox<(pid: pid_t?, stopping: Bool)>((nil, false))
    private let wake = DispatchSemaphore(value: 0)

    init(
        executable: String, arguments: [String], environment: [String: String], descriptors: [CInt],
        crashReport: CrashReport, logger: Logger, onFinish: @escaping @Sendable (Outcome) -> Void
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.descriptors = descriptors
        self.crashReport = crashReport
        self.logger = logger
        self.onFinish = onFinish
    }

    /// Spawns the first worker (throws when it cannot be spawned) and starts supervising.
    func start() throws {
        let first = try state.withLockedValue { state in
            let worker = try spawn()
            state.pid = worker.pid
            return worker
        }
        logger.notice("started the kernel worker", metadata: ["pid": "\(first.pid)"])
        let thread = Thread { [self] in supervise(first) }
        thread.name = "meltybase-supervisor"
        thread.start()
    }

    /// The running worker's pid.
    var workerPID: pid_t? { state.withLockedValue { $0.pid } }

    /// Stops restarting and sends `signal` to the worker (again with SIGKILL to end a drain).
    func stop(signal: CInt = SIGTERM) {
        state.withLockedValue { state in
            state.stopping = true
            if let pid = state.pid { kill(pid, signal) }
        }
        wake.signal()
    }

    private func supervise(_ first: Running) {
        var backoff = RestartBackoff()
        var worker = first
        var isFirst = true
        while true {
            let status = ChildSpawn.wait(for: worker.pid) ?? 0
            let stopping = state.withLockedValue { state -> Bool in
                state.pid = nil
                return state.stopping
            }
            let exit = WorkerExit(status: status)
            let uptime = Date().timeIntervalSince(worker.startedAt)
            if stopping {
                _ = worker.output.finish()
                logger.notice("the kernel worker \(exit)", metadata: ["pid": "\(worker.pid)"])
                onFinish(.stopped)
                return
            }
            if isFirst && exit.code == WorkerHandoff.startFailureExitCode {
                _ = worker.output.finish()
                onFinish(.couldNotStart("\(exit)"))
                return
            }
            var delay = backoff.delay(afterUptime: uptime)
            // Restart before reading the crash report: every millisecond here is a failed request.
            var replacement = delay == 0 ? restart() : nil
            let plugin = exit.crashed ? crashReport.lastPlugin(in: worker.output.finish()) : nil
            if !exit.crashed {
                let output = worker.output  // Not `worker`: the loop reassigns it before this runs.
                DispatchQueue.global().async { _ = output.finish() }
            }
            var message = "the kernel worker (pid \(worker.pid)) \(exit) after \(String(format: "%.1f", uptime)) s"
            if let plugin { message += "; the innermost plugin in the crash's stack is '\(plugin.name)' (\(plugin.library))" }
            if let replacement {
                message += "; restarted it at once as pid \(replacement.pid)"
            } else {
                message += "; restarting it in \(delay) s (\(backoff.consecutiveDeaths) deaths in a row, each within \(Int(backoff.stableAfterSeconds)) s of its start)"
            }
            logger.error("\(message)", metadata: ["exit": "\(exit)", "plugin": "\(plugin?.name ?? "")"])
            while replacement == nil {
                _ = wake.wait(timeout: .now() + delay)
                if state.withLockedValue({ $0.stopping }) {
                    onFinish(.stopped)
                    return
                }
                replacement = restart()
                if replacement == nil { delay = backoff.delay(afterUptime: 0) }
            }
            if let replacement { worker = replacement }
            isFirst = false
        }
    }

    /// Spawns a worker unless stopping; nil when stopping or when the spawn failed (logged).
    private func restart() -> Running? {
        do {
            return try state.withLockedValue { state -> Running? in
                guard !state.stopping else { return nil }
                let worker = try spawn()
                state.pid = worker.pid
                return worker
            }
        } catch {
            logger.error("cannot restart the kernel worker: \(error)")
            return nil
        }
    }

    private func spawn() throws -> Running {
        let stderr = try ChildSpawn.pipe()
        defer { close(stderr.write) }
        let pid: pid_t
        do {
            pid = try ChildSpawn.spawn(
                executable: executable, arguments: arguments, environment: environment,
                stderr: stderr.write, descriptors: descriptors)
        } catch let error as ChildSpawnError {
            close(stderr.read)
            throw SupervisorError(error)
        } catch {
            close(stderr.read)
            throw error
        }
        return Running(pid: pid, output: WorkerOutput(descriptor: stderr.read), startedAt: Date())
    }
}
