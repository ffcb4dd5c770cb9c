import Foundation
import IntelligenceVectors
import MeltyPluginSDK
import MeltyPostgres
import Synchronization

/// The Knowledge Mesh hub's connections: one small pool to the kernel's system database for
/// every portal of this kernel (not one per portal), its schema installed once, and a
/// statement timeout so one portal's mesh query cannot hold the shared database.
final class MeshHubPool: Sendable {
    /// Connections to the system database for the whole kernel.
    static let size = 4
    /// The longest a hub statement may run.
    static let statementTimeoutMilliseconds = 5_000

    private let host: PluginHostServices
    private let loop: PostgresEventLoop
    private struct State {
        var pool: PostgresPool?
        var installed = false
    }
    private let state = Mutex(State())

    /// A hub reached through `host`'s system database conninfo, its sockets on `loop`.
    init(host: PluginHostServices, loop: PostgresEventLoop) {
        self.host = host
        self.loop = loop
    }

    /// The pool, with the hub's schema installed (on first use).
    func pool() async throws -> PostgresPool {
        let existing = try state.withLock { state -> (PostgresPool, Bool) in
            if let pool = state.pool { return (pool, state.installed) }
            let system = try host.postgresConninfo(portal: nil)
            let created = PostgresPool(
                conninfo: Conninfo.derive(
                    system, overrides: ["application_name": "meltybase-intelligence-mesh", "options": "-c statement_timeout=\(Self.statementTimeoutMilliseconds)"]),
                size: Self.size, maxWaiting: 1_000, loop: loop)
            state.pool = created
            return (created, false)
        }
        if existing.1 { return existing.0 }
        try await existing.0.run { connection in try await MeshFederation.install(connection) }
        state.withLock { $0.installed = true }
        return existing.0
    }

    /// Closes the pool.
    func close() {
        state.withLock { state in
            state.pool?.close()
            state.pool = nil
            state.installed = false
        }
    }
}
