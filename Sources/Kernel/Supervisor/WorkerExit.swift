import Foundation

/// How a worker process ended, decoded from a `waitpid` status.
struct WorkerExit: Sendable, CustomStringConvertible {
    /// The exit code, when the worker exited.
    let code: CInt?
    /// The signal that ended it, when it was killed.
    let signal: CInt?

    init(status: CInt) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are C macros Swift does not import.
        if status & 0x7f == 0 {
            code = (status >> 8) & 0xff
            signal = nil
        } else {
            code = nil
            signal = status & 0x7f
        }
    }

    /// Whether the worker died of a fault (a Swift trap is SIGILL or SIGTRAP), which leaves a
    /// crash report on its stderr, rather than being killed or exiting.
    var crashed: Bool {
        guard let signal else { return false }
        return [SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV].contains(signal)
    }

    /// `exited with status 1` or `was killed by signal 9 (Killed)`.
    var description: String {
        if let signal { return "was killed by signal \(signal) (\(String(cString: strsignal(signal))))" }
        return "exited with status \(code ?? -1)"
    }
}
