import MeltyPluginSDK
import MeltyPostgres
import Synchronization
import VaultCore

/// The system database one group of portals lives on: a ``PostgresPool`` on the plugin's
/// event loop (no thread waits on Postgres), and the vault schema, created once per
/// database before the first job runs.
final class VaultDatabase: Sendable {
    private let pool: PostgresPool
    /// The schema migration and the master key check, run before the first job (retried by
    /// the next job after a failure).
    private let migration = OneTimeSetup()
    /// Ids of the master keys this process holds.
    private let masterKeyIDs: [String]

    init(conninfo: String, connections: Int, masterKeyIDs: [String], loop: PostgresEventLoop) {
        pool = PostgresPool(conninfo: conninfo, size: connections, maxWaiting: VaultDatabases.maxWaiting, loop: loop)
        self.masterKeyIDs = masterKeyIDs
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
        let masterKeyIDs = masterKeyIDs
        try await migration.ensure {
            do {
                try await pool.run { connection in
                    try await VaultSchema.migrate(on: connection)
                    // Another kernel of the cluster wrapped data keys under a master key this one
                    // lacks: say so until it is given the cluster's key.
                    try await VaultSchema.checkMasterKeys(on: connection, held: masterKeyIDs)
                }
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
    private let masterKeyIDs: [String]
    private let loop: PostgresEventLoop

    init(connectionsPerPool: Int, masterKeyIDs: [String], loop: PostgresEventLoop) {
        self.connectionsPerPool = connectionsPerPool
        self.masterKeyIDs = masterKeyIDs
        self.loop = loop
    }

    /// The database at `conninfo`, its pool created on first use.
    func database(for conninfo: String) -> VaultDatabase {
        pools.withLock { pools in
            if let existing = pools[conninfo] { return existing }
            let created = VaultDatabase(conninfo: conninfo, connections: connectionsPerPool, masterKeyIDs: masterKeyIDs, loop: loop)
            pools[conninfo] = created
            return created
        }
    }

    /// Closes every pool.
    func close() {
        for database in pools.withLock({ Array($0.values) }) { database.close() }
    }
}
