import MeltyPluginSDK
import MeltyPostgres
import Synchronization
import VaultCore

/// The system database one group of portals lives on: a ``PostgresPool`` on the plugin's
/// event loop (no thread waits on Postgres), and the vault schema, created once per
/// database before the first job runs.
final class VaultDatabase: Sendable {
    private let pool: PostgresPool
    /// The schema migration, run before the first job (retried by the next job after a failure).
    private let migration = OneTimeSetup()

    init(conninfo: String, connections: Int, loop: PostgresEventLoop) {
        pool = PostgresPool(conninfo: conninfo, size: connections, maxWaiting: VaultDatabases.maxWaiting, loop: loop)
    }

    /// Runs `body` with a pooled connection. Pool refusals (saturated, Postgres down) and
    /// Postgres failures outside a vault call become ``VaultError/database(_:)``.
    func run<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await migrated()
        do {
            return try await pool.run(body)
        } catch let error as PostgresPoolError {
            throw VaultError.database("\(error)")
        }
    }

    private func migrated() async throws {
        let pool = self.pool
        try await migration.ensure {
            do {
                try await pool.run { try await VaultSchema.migrate(on: $0) }
            } catch let error as PostgresPoolError {
                throw VaultError.database("cannot reach the system database: \(error)")
            }
        }
    }

    /// Closes the pool (idle connections now, busy ones when their job ends).
    func close() { pool.close() }
}

/// One ``VaultDatabase`` per system database the host names (`postgres_conninfo` per portal;
/// a test process runs several kernels, each on its own system database), all on the
/// plugin's one event loop.
final class VaultDatabases: Sendable {
    /// Jobs that may wait for a connection before the vault answers 503.
    static let maxWaiting = 512

    private let pools = Mutex<[String: VaultDatabase]>([:])
    private let connectionsPerPool: Int
    private let loop: PostgresEventLoop

    init(connectionsPerPool: Int, loop: PostgresEventLoop) {
        self.connectionsPerPool = connectionsPerPool
        self.loop = loop
    }

    /// The database at `conninfo`, its pool created on first use.
    func database(for conninfo: String) -> VaultDatabase {
        pools.withLock { pools in
            if let existing = pools[conninfo] { return existing }
            let created = VaultDatabase(conninfo: conninfo, connections: connectionsPerPool, loop: loop)
            pools[conninfo] = created
            return created
        }
    }

    /// Closes every pool.
    func close() {
        for database in pools.withLock({ Array($0.values) }) { database.close() }
    }
}
