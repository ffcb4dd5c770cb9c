import Foundation
import Logging
import MeltyPostgres
import Synchronization

/// Holds the archive to `archive_timeout`: every `intervalSeconds` it closes the current WAL
/// segment (`pg_switch_wal()`) when a transaction committed since the last look, so the
/// archiver copies it and committed work waits at most about one interval unarchived.
///
/// Postgres's own `archive_timeout` should do this, but on some hosts (Debian's Postgres 15
/// in the sandboxes this project is built in) the checkpointer never forces the switch, and
/// a quiet minute's commits then waited until 16 MiB of WAL had accumulated. The switcher
/// makes the RPO independent of that. It asks `pg_last_committed_xact()` (the cluster runs
/// with `track_commit_timestamp = on` when archiving), so an idle cluster is never switched
/// and a transaction that began long before but committed since is noticed. When Postgres
/// did switch on its own, `pg_switch_wal()` finds an empty segment and does nothing.
public final class WALSegmentSwitcher: Sendable {
    private let conninfo: String
    private let intervalSeconds: Int
    private let logger: Logger
    private let task = Mutex<Task<Void, Never>?>(nil)

    /// A switcher for the cluster at `conninfo` (a superuser's), looking every `intervalSeconds`.
    public init(conninfo: String, intervalSeconds: Int, logger: Logger) {
        self.conninfo = conninfo
        self.intervalSeconds = max(1, intervalSeconds)
        self.logger = logger
    }

    /// Starts looking, on a Postgres event loop of its own (a second call does nothing).
    public func start() {
        task.withLock { current in
            guard current == nil else { return }
            current = Task { [self] in await self.loop() }
        }
    }

    /// Stops looking.
    public func stop() {
        task.withLock { $0?.cancel() }
    }

    /// The statement of one look: the last committed transaction's id, and the segment switch
    /// when it differs from `$1` (the id seen at the previous switch; NULL at first, so commits
    /// made before this kernel started are switched out too).
    static let switchWhenCommitted = """
        SELECT (pg_last_committed_xact()).xid::text AS xid,
               CASE WHEN (pg_last_committed_xact()).xid::text IS DISTINCT FROM $1 THEN pg_walfile_name(pg_switch_wal()) END AS closed
        """

    /// One look on `connection`: closes the segment when a transaction committed since a look
    /// that saw `lastCommitted`. Returns the committed id now seen and the closed segment's name.
    public static func switchIfCommitted(
        on connection: PostgresConnection, since lastCommitted: String?
    ) async throws -> (
        lastCommitted: String?, closedSegment: String?
    ) {
        let rows = try await connection.query(switchWhenCommitted, [lastCommitted])
        return (rows.value("xid"), rows.value("closed"))
    }

    private func loop() async {
        let eventLoop = PostgresEventLoop(name: "meltybase-wal-switch")
        defer { eventLoop.shutdown() }
        var connection: PostgresConnection?
        var lastCommitted: String?
        var failing = false
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(intervalSeconds))
            guard !Task.isCancelled else { break }
            do {
                let open: PostgresConnection
                if let connection {
                    open = connection
                } else {
                    open = try await PostgresConnection.connect(conninfo, on: eventLoop)
                }
                connection = open
                let look = try await Self.switchIfCommitted(on: open, since: lastCommitted)
                lastCommitted = look.lastCommitted
                if failing { logger.notice("WAL segment switches work again") }
                failing = false
                if let closed = look.closedSegment { logger.debug("closed a WAL segment for the archive", metadata: ["segment": "\(closed)"]) }
            } catch {
                connection?.close()
                connection = nil
                // Postgres restarting (the supervisor restarts it) or stopping: say so once.
                if !failing {
                    logger.warning(
                        "could not close the WAL segment for the archive; committed work may wait longer than [backup] archive_timeout_seconds until Postgres answers again",
                        metadata: ["error": "\(error)"])
                }
                failing = true
            }
        }
        connection?.close()
    }
}
