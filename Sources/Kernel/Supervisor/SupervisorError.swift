import Foundation
import MeltyProcess

/// A failure of `meltybase serve`'s supervisor or of its worker's start, with what to do.
public enum SupervisorError: Error, CustomStringConvertible {
    /// A listener's address could not be bound.
    case cannotListen(host: String, port: Int, reason: String)
    /// A child process (the kernel worker or the watchdog) could not be spawned.
    case cannotSpawn(executable: String, reason: String)
    /// A worker was started without the address of a service its supervisor owns.
    case missingServiceAddress(String)
    /// The first worker exited before serving (its own log line says why).
    case workerCouldNotStart(exit: String)

    /// The message with a hint.
    public var description: String {
        switch self {
        case let .cannotListen(host, port, reason):
            return "cannot listen on \(host):\(port): \(reason) (hint: stop what uses the port, or change [[listeners]] port / --port)"
        case let .cannotSpawn(executable, reason):
            return "cannot start \(executable): \(reason) (hint: check that the meltybase binary is still in place and executable)"
        case let .missingServiceAddress(variable):
            return "the kernel worker was started without \(variable) (hint: run `meltybase serve`; the worker mode is started by it, not by hand)"
        case let .workerCouldNotStart(exit):
            return "the kernel could not start (worker \(exit)) (hint: the error is logged just above)"
        }
    }

    /// A spawn failure, with the supervisor's hint.
    init(_ error: ChildSpawnError) {
        self = .cannotSpawn(executable: error.executable, reason: error.reason)
    }
}
