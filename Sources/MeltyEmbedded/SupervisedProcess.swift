import Foundation
import Logging
import NIOConcurrencyHelpers

/// A child process the kernel keeps running: restarted when it dies, stopped on shutdown.
///
/// Restarts back off (``RestartBackoff``: 0.5 s doubling to 8 s, then every 10 s; a child
/// that stayed up for 30 s restarts after 0.5 s again); a child that keeps dying is
/// reported on every attempt so the cause (a full disk, a taken socket) shows in the log.
final class SupervisedProcess: Sendable {
    let name: String
    private let executable: String
    private let arguments: [String]
    private let logFile: String
    private let logger: Logger
    private struct State {
        var process: Process?
        var stopping = false
        var restarts = 0
        var startedAt = Date()
        var backoff = RestartBackoff(delays: [0.5, 1, 2, 4, 8, 10], stableAfterSeconds: 30)
    }
    private let state = NIOLockedValueBox(State())

    init(name: String, executable: String, arguments: [String], logFile: String, logger: Logger) {
        self.name = name
        self.executable = executable
        self.arguments = arguments
        self.logFile = logFile
        self.logger = logger
    }

    /// Starts the child; throws when it cannot be spawned.
    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !FileManager.default.fileExists(atPath: logFile) {
            FileManager.default.createFile(atPath: logFile, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        let output = FileHandle(forWritingAtPath: logFile)
        output?.seekToEndOfFile()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        process.terminationHandler = { [weak self] finished in
            try? output?.close()
            self?.exited(finished)
        }
        try process.run()
        state.withLockedValue { state in
            state.process = process
            state.startedAt = Date()
        }
    }

    /// The child's pid, while it runs.
    var pid: Int32? { state.withLockedValue { $0.process?.isRunning == true ? $0.process?.processIdentifier : nil } }

    private func exited(_ process: Process) {
        let (stopping, attempt, delay) = state.withLockedValue { state -> (Bool, Int, Double) in
            guard !state.stopping else { return (true, state.restarts, 0) }
            state.restarts += 1
            return (false, state.restarts, state.backoff.delay(afterUptime: Date().timeIntervalSince(state.startedAt)))
        }
        guard !stopping else { return }
        logger.error(
            "\(name) exited unexpectedly; restarting",
            metadata: [
                "status": "\(process.terminationStatus)", "restart": "\(attempt)", "in_seconds": "\(delay)", "log": "\(logFile)",
            ])
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [weak self] in
            guard let self, !self.state.withLockedValue({ $0.stopping }) else { return }
            do {
                try self.start()
            } catch {
                self.logger.error("\(self.name) could not be restarted: \(error)")
            }
        }
    }

    /// Marks the child as stopping, so that its exit is not mistaken for a crash.
    func prepareToStop() {
        state.withLockedValue { $0.stopping = true }
    }

    /// Sends `signal`, waits up to `timeout` seconds, then kills.
    func stop(signal: Int32 = SIGTERM, timeout: Double = 15) {
        let process = state.withLockedValue { state -> Process? in
            state.stopping = true
            return state.process
        }
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            logger.warning("\(name) did not stop in \(Int(timeout)) s; killing it")
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
