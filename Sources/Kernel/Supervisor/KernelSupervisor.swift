import Foundation
import Logging
import MeltyEmbedded
import MeltyProcess
import NIOConcurrencyHelpers
import UnixSignals

/// `meltybase serve`: a small process that owns what must outlive a kernel crash and runs
/// the kernel itself as a worker process.
///
/// Plugins share the kernel's address space, so a trap in any of them ends the kernel
/// process. The supervisor holds the data directory's lock, the embedded Postgres and
/// Redis, and the listening sockets, and restarts a dead worker at once: a fault costs
/// the seconds a kernel needs to start, the embedded servers keep running, and
/// connections that arrive meanwhile wait in the sockets' backlog.
///
/// SIGTERM or SIGINT: the worker gets SIGTERM and drains (bounded; a second signal or the
/// bound kills it), then Redis and Postgres stop. If the supervisor itself is killed, the
/// worker exits (lifeline pipe, `WorkerHandoff`) and a watchdog stops Postgres and Redis
/// (`EmbeddedServicesWatchdog`); the next `serve` on the data directory would also stop
/// leftovers before starting its own.
public final class KernelSupervisor: Sendable {
    /// The validated configuration (listener overrides applied).
    public let config: KernelConfig
    private let workerExecutable: String
    private let workerArguments: [String]
    private let logger: Logger

    /// A supervisor for `config` that starts workers as `workerExecutable workerArguments`
    /// (the same binary in worker mode).
    public init(config: KernelConfig, workerExecutable: String, workerArguments: [String], logger: Logger) {
        self.config = config
        self.workerExecutable = workerExecutable
        self.workerArguments = workerArguments
        self.logger = logger
    }

    /// How long a worker may drain in-flight requests after SIGTERM before it is killed.
    public var drainSeconds: Double { max(10, config.requestTimeoutSeconds + 5) }

    private enum Event: Sendable {
        case signal(UnixSignal)
        case finished(WorkerSupervisor.Outcome)
    }

    /// Starts the embedded services, the listeners and the worker; returns after a
    /// shutdown signal once everything has stopped; throws when starting fails.
    public func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let signalTask = Task { for await caught in signals { continuation.yield(.signal(caught)) } }
        defer { signalTask.cancel() }

        let owned = OwnedResources()
        do {
            try await supervise(owned: owned, events: events, continuation: continuation)
        } catch {
            await Self.onOwnThread { owned.release() }
            throw error
        }
        await Self.onOwnThread { owned.release() }
        logger.notice("MeltyBase supervisor stopped")
    }

    private func supervise(owned: OwnedResources, events: AsyncStream<Event>, continuation: AsyncStream<Event>.Continuation) async throws {
        let config = self.config
        let logger = self.logger
        var environment = ProcessInfo.processInfo.environment
        try await Self.offExecutor {
            // 0711: the unprivileged account running the embedded Postgres may pass through
            // to its own folder, but nobody else may list or read the data directory.
            try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
            if config.usesEmbeddedPostgres || config.usesEmbeddedRedis {
                owned.lock = try DataDirectoryLock(dataDirectory: config.dataDirectory)
            }
            if config.usesEmbeddedPostgres {
                let postgres = try config.embeddedPostgres(logger: logger)
                owned.postgres = postgres
                try postgres.start()
            }
        }
        if let postgres = owned.postgres { environment["MELTYBASE_DATABASE_URL"] = postgres.conninfo }
        if config.usesEmbeddedRedis {
            do {
                try await Self.offExecutor {
                    let redis = EmbeddedRedis(dataDirectory: config.dataDirectory, logger: logger)
                    owned.redis = redis
                    try redis.start()
                }
                if let redis = owned.redis { environment["MELTYBASE_REDIS_URL"] = redis.url }
            } catch {
                // The worker then runs without Redis, as an unsupervised kernel would.
                logger.warning("the embedded Redis did not start; the kernel runs without Redis", metadata: ["error": "\(error)"])
            }
        }
        owned.sockets = try await Self.offExecutor {
            var sockets: [ListeningSocket] = []
            do {
                for listener in config.listeners { sockets.append(try ListeningSocket.bind(host: listener.host, port: listener.port)) }
            } catch {
                for socket in sockets { socket.close() }
                throw error
            }
            return sockets
        }
        let lifeline = try ChildSpawn.pipe()
        owned.lifeline = lifeline
        if owned.postgres != nil || owned.redis != nil {
            owned.watchdog = try EmbeddedServicesWatchdog(
                lifeline: lifeline.read, postgresPIDFile: owned.postgres.map { $0.clusterDirectory + "/postmaster.pid" },
                redisPIDFile: owned.redis?.pidFile)
        }
        if environment["SWIFT_BACKTRACE"] == nil {
            // The crash report goes to stderr, which the supervisor reads for the plugin to blame.
            environment["SWIFT_BACKTRACE"] = "enable=yes,interactive=no,color=no,output-to=stderr"
        }

        let workers = WorkerSupervisor(
            executable: workerExecutable, arguments: workerArguments, environment: environment,
            descriptors: [lifeline.read] + owned.sockets.map(\.descriptor), crashReport: CrashReport(plugins: config.plugins),
            logger: logger, onFinish: { continuation.yield(.finished($0)) })
        try workers.start()
        let backups = owned.postgres.flatMap { KernelBackups.start(config: config, postgres: $0, logger: logger) }
        defer { backups?.stop() }

        var drainDeadline: Task<Void, Never>?
        defer { drainDeadline?.cancel() }
        for await event in events {
            switch event {
            case .signal(let caught):
                if drainDeadline == nil {
                    let seconds = drainSeconds
                    logger.notice("\(caught): stopping the kernel worker (in-flight requests get up to \(Int(seconds)) s), then the embedded services")
                    workers.stop(signal: SIGTERM)
                    drainDeadline = Task {
                        try? await Task.sleep(for: .seconds(seconds))
                        guard !Task.isCancelled else { return }
                        logger.warning("the kernel worker did not stop within \(Int(seconds)) s; killing it")
                        workers.stop(signal: SIGKILL)
                    }
                } else {
                    logger.notice("\(caught) again: killing the kernel worker")
                    workers.stop(signal: SIGKILL)
                }
            case .finished(.stopped):
                return
            case .finished(.couldNotStart(let exit)):
                throw SupervisorError.workerCouldNotStart(exit: exit)
            }
        }
    }

    /// Runs blocking work (process start-up, `waitpid`, DNS) on its own thread, not the executor.
    private static func offExecutor<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try work() }) }.start()
        }
    }

    /// Runs blocking clean-up on its own thread.
    private static func onOwnThread(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            Thread {
                work()
                continuation.resume()
            }.start()
        }
    }
}

/// What the supervisor started, released in reverse order whatever happened.
private final class OwnedResources: Sendable {
    private struct State {
        var lock: DataDirectoryLock?
        var postgres: EmbeddedPostgres?
        var redis: EmbeddedRedis?
        var sockets: [ListeningSocket] = []
        var lifeline: (read: CInt, write: CInt)?
        var watchdog: EmbeddedServicesWatchdog?
    }

    // Set from the start-up thread, released from another one.
    private let state = NIOLockedValueBox(State())

    var lock: DataDirectoryLock? {
        get { state.withLockedValue { $0.lock } }
        set { state.withLockedValue { $0.lock = newValue } }
    }
    var postgres: EmbeddedPostgres? {
        get { state.withLockedValue { $0.postgres } }
        set { state.withLockedValue { $0.postgres = newValue } }
    }
    var redis: EmbeddedRedis? {
        get { state.withLockedValue { $0.redis } }
        set { state.withLockedValue { $0.redis = newValue } }
    }
    var sockets: [ListeningSocket] {
        get { state.withLockedValue { $0.sockets } }
        set { state.withLockedValue { $0.sockets = newValue } }
    }
    var lifeline: (read: CInt, write: CInt)? {
        get { state.withLockedValue { $0.lifeline } }
        set { state.withLockedValue { $0.lifeline = newValue } }
    }
    var watchdog: EmbeddedServicesWatchdog? {
        get { state.withLockedValue { $0.watchdog } }
        set { state.withLockedValue { $0.watchdog = newValue } }
    }

    /// Stops the watchdog (the services are stopped here, not by it), closes the sockets,
    /// stops Redis then Postgres, and lets go of the data directory.
    func release() {
        let owned = state.withLockedValue { state -> State in
            defer { state = State() }
            return state
        }
        owned.watchdog?.stop()
        for socket in owned.sockets { socket.close() }
        owned.redis?.stop()
        owned.postgres?.stop()
        if let lifeline = owned.lifeline {
            close(lifeline.read)
            close(lifeline.write)
        }
        withExtendedLifetime(owned.lock) {}
    }
}
