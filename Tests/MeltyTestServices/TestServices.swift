import Foundation
import Logging
import MeltyEmbedded
import MeltyPostgres
import NIOConcurrencyHelpers

/// One real Postgres and one real Redis for the whole test process, started with the
/// kernel's own embedded-mode code in `.build/test-services` and stopped at exit.
/// Each test kernel gets a fresh database on that Postgres.
public enum TestServices {
    /// The running services.
    public struct Running: Sendable {
        /// The shared Postgres.
        public let postgres: EmbeddedPostgres
        /// The shared Redis.
        public let redis: EmbeddedRedis
    }

    private static let shared = NIOLockedValueBox<Running?>(nil)
    /// The folder holding Package.swift.
    public static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    /// Where the services keep their data.
    public static var dataDirectory: String { repositoryRoot + "/.build/test-services" }

    /// Starts the services once; later calls return at once.
    public static func start() throws -> Running {
        try shared.withLockedValue { running in
            if let running { return running }
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
            chmod(dataDirectory, 0o711)
            var logger = Logger(label: "test-services")
            logger.logLevel = .warning
            let postgres = try EmbeddedPostgres(dataDirectory: dataDirectory, logger: logger)
            try postgres.start()
            let redis = EmbeddedRedis(dataDirectory: dataDirectory, logger: logger)
            try redis.start()
            // Databases of earlier runs only cost disk and slow the file scans: drop them.
            try BlockingPostgres.run(postgres.conninfo) { admin in
                for row in try await admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'").rows {
                    if let name = row[0] { _ = try? await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
                }
            }
            let started = Running(postgres: postgres, redis: redis)
            running = started
            atexit { TestServices.stopAll() }
            return started
        }
    }

    /// Stops both services (at exit).
    public static func stopAll() {
        guard let running = shared.withLockedValue({ $0 }) else { return }
        running.redis.stop()
        running.postgres.stop()
    }

    /// A new, empty database on the shared Postgres; returns its conninfo.
    public static func freshDatabase() throws -> String {
        let running = try start()
        let name = "test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try BlockingPostgres.run(running.postgres.conninfo) { admin in
            _ = try await admin.execute("CREATE DATABASE \(name)")
        }
        return running.postgres.conninfo.replacingOccurrences(of: "dbname=meltybase", with: "dbname=\(name)")
    }

    /// The event loop of the tests' own Postgres connections (one for the test process).
    public static let loop = PostgresEventLoop(name: "test-postgres")

    /// A connection to `conninfo` on the tests' loop.
    public static func connect(_ conninfo: String) async throws -> PostgresConnection {
        try await PostgresConnection.connect(conninfo, on: loop)
    }

    /// The shared Redis URL.
    public static func redisURL() throws -> String { try start().redis.url }
}
