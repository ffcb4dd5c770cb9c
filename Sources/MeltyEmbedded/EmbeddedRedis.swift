import Foundation
import Logging
import MeltyRedis
import NIOConcurrencyHelpers

/// A private redis-server on a unix socket in the data directory, as a supervised child.
///
/// Redis keeps nothing on disk here (`save ""`, no AOF): it only holds rate-limit counters
/// and pub/sub, which are rebuilt as traffic flows.
public final class EmbeddedRedis: Sendable {
    /// Folder of the socket and log.
    public let directory: String
    /// The socket path.
    public let socketPath: String
    private let logger: Logger
    private let supervised = NIOLockedValueBox<SupervisedProcess?>(nil)

    /// Where redis-server writes its pid while it runs (the supervisor's watchdog reads it).
    public var pidFile: String { directory + "/redis.pid" }

    /// `unix://<socket>`, the URL the kernel's Redis client uses.
    public var url: String { "unix://\(socketPath)" }

    /// Prepares paths; does not start anything.
    public init(dataDirectory: String, logger: Logger) {
        self.logger = logger
        directory = (dataDirectory as NSString).appendingPathComponent("redis")
        let preferred = directory + "/redis.sock"
        socketPath = preferred.utf8.count < 100 ? preferred : PrivateSocketDirectory.fallback(for: directory, name: "redis") + "/redis.sock"
    }

    /// Starts redis-server and waits until it answers PING.
    public func start() throws {
        guard let executable = EmbeddedTools.redisServer() else {
            throw EmbeddedServiceError(
                "redis-server not found",
                hint: "install it with `apt-get install redis-server` (scripts/setup.sh does), or set [redis] url to use an existing server")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let socketFolder = (socketPath as NSString).deletingLastPathComponent
        if socketFolder != directory { try PrivateSocketDirectory.prepare(socketFolder) }
        if FileManager.default.fileExists(atPath: socketPath) {
            // A server left by a kernel that was killed: shut it down so this one supervises.
            if let client = try? RedisClient(url: url), (try? client.commandSync(["PING"])) != nil {
                logger.notice("stopping a redis-server left running by an earlier kernel")
                _ = try? client.commandSync(["SHUTDOWN", "NOSAVE"])
                usleep(200_000)
            }
            try? FileManager.default.removeItem(atPath: socketPath)
        }
        let process = SupervisedProcess(
            name: "embedded Redis", executable: executable,
            arguments: [
                "--port", "0", "--unixsocket", socketPath, "--unixsocketperm", "700", "--dir", directory,
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", "--pidfile", pidFile,
            ],
            logFile: directory + "/redis.log", logger: logger)
        logger.notice("starting the embedded Redis", metadata: ["socket": "\(socketPath)"])
        try process.start()
        supervised.withLockedValue { $0 = process }
        let client = try RedisClient(url: url)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if case .status("PONG")? = try? client.commandSync(["PING"]) {
                logger.notice("embedded Redis is ready")
                return
            }
            usleep(50_000)
        }
        throw EmbeddedServiceError("the embedded Redis did not answer within 20 s", hint: "see \(directory)/redis.log")
    }

    /// Stops the server.
    public func stop() {
        // The kernel's threads block SIGTERM and children inherit the mask, so ask Redis
        // over its socket; the signal is the fallback.
        supervised.withLockedValue { $0 }?.prepareToStop()
        if let client = try? RedisClient(url: url) { _ = try? client.commandSync(["SHUTDOWN", "NOSAVE"]) }
        supervised.withLockedValue { $0 }?.stop(signal: SIGTERM, timeout: 10)
        supervised.withLockedValue { $0 = nil }
    }

    /// The supervised server process (for tests).
    var process: SupervisedProcess? { supervised.withLockedValue { $0 } }
}
