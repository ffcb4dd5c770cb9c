import Foundation

/// Streams changes from a logical replication slot with the `pgoutput` plugin over a
/// replication connection (`START_REPLICATION SLOT … LOGICAL`): answers the server's
/// keep-alives and reports progress with standby status updates, so the slot's
/// `confirmed_flush_lsn` advances to what the consumer ``acknowledge(_:)``d. After a
/// reconnect, ``open(conninfo:slot:publications:loop:)`` resumes after the confirmed position.
///
/// One task reads a stream; it is not shared.
public final class LogicalReplicationStream {
    /// A decoded message and where it sits in the log.
    public struct Event: Sendable {
        /// The position of the WAL record the message came from (XLogData's start).
        public var lsn: LSN
        /// The message.
        public var message: PgOutputMessage
    }

    /// The slot being read.
    public let slot: String
    private let connection: PostgresConnection
    /// The highest position acknowledged (reported as written, flushed and applied).
    public private(set) var acknowledged: LSN
    /// The highest position the server said it has sent (from XLogData and keep-alives).
    public private(set) var serverPosition: LSN = .zero
    /// Tables described so far by `Relation` messages, by OID.
    public private(set) var relations: [UInt32: PgOutputRelation] = [:]
    /// A transaction's changes are being received (between Begin and Commit).
    private var transactionOpen = false
    /// The end of the last commit received: everything before it is the consumer's to acknowledge.
    private var lastCommitEnd: LSN = .zero

    private init(slot: String, connection: PostgresConnection, start: LSN) {
        self.slot = slot
        self.connection = connection
        self.acknowledged = start
    }

    /// The replication conninfo for `conninfo` (`replication=database`).
    public static func replicationConninfo(_ conninfo: String) -> String {
        Conninfo.derive(conninfo, overrides: ["replication": "database"])
    }

    /// Creates a logical slot using `pgoutput` (`temporary`: dropped when its connection
    /// closes); returns its consistent point. Throws when it exists (SQLSTATE 42710).
    @discardableResult
    public static func createSlot(_ slot: String, conninfo: String, loop: PostgresEventLoop) async throws -> LSN {
        let connection = try await PostgresConnection.connect(replicationConninfo(conninfo), on: loop)
        defer { connection.close() }
        let rows = try await connection.execute("CREATE_REPLICATION_SLOT \(SQL.ident(slot)) LOGICAL pgoutput NOEXPORT_SNAPSHOT")
        return rows.value("consistent_point").flatMap(LSN.init) ?? .zero
    }

    /// Drops a slot (no error when it does not exist).
    public static func dropSlot(_ slot: String, conninfo: String, loop: PostgresEventLoop) async throws {
        let connection = try await PostgresConnection.connect(conninfo, on: loop)
        defer { connection.close() }
        try await connection.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", [slot])
    }

    /// Starts streaming `slot` for `publications` from `start` (`.zero`: after the slot's
    /// confirmed flush position, which is where a reconnect resumes).
    public static func open(
        conninfo: String, slot: String, publications: [String], start: LSN = .zero,
        loop: PostgresEventLoop
    ) async throws -> LogicalReplicationStream {
        guard !publications.isEmpty else { throw PostgresError(sqlState: "22023", message: "name at least one publication to stream") }
        let connection = try await PostgresConnection.connect(replicationConninfo(conninfo), on: loop)
        do {
            let names = publications.map(SQL.ident).joined(separator: ",")
            let command = "START_REPLICATION SLOT \(SQL.ident(slot)) LOGICAL \(start) (proto_version '1', publication_names \(SQL.literal(names)))"
            try await connection.startCopyBoth(command)
        } catch {
            connection.close()
            throw error
        }
        return LogicalReplicationStream(slot: slot, connection: connection, start: start)
    }

    /// The next change message, answering keep-alives on the way; nil when the server ended
    /// the stream. Throws ``PostgresError`` when the connection breaks (open the stream again
    /// to resume after the last acknowledged position).
    public func next() async throws -> Event? {
        while let data = try await connection.readCopyData() {
            if let event = try await handle(data) { return event }
        }
        return nil
    }

    /// The next change message if it has already arrived, without waiting for the network
    /// (keep-alives on the way are answered); nil when nothing complete is there yet. Lets a
    /// consumer gather the transactions that are already waiting into one batch. Throws
    /// like ``next()``; a stream the server ended throws too.
    public func nextIfAvailable() async throws -> Event? {
        while true {
            guard let available = try connection.readCopyDataIfAvailable() else {
                throw PostgresError(sqlState: nil, message: "the server ended the replication stream of slot \(slot)")
            }
            guard let data = available else { return nil }
            if let event = try await handle(data) { return event }
        }
    }

    /// One CopyData message: a change (returned) or a keep-alive (answered; nil).
    private func handle(_ data: [UInt8]) async throws -> Event? {
        var reader = ReplicationReader(data)
        switch try reader.byte() {
        case UInt8(ascii: "w"):
            let start = LSN(try reader.integer(UInt64.self))
            let end = LSN(try reader.integer(UInt64.self))
            _ = try reader.integer(Int64.self)
            serverPosition = max(serverPosition, end)
            let message = try PgOutputMessage.decode(reader.rest())
            switch message {
            case .relation(let relation): relations[relation.id] = relation
            case .begin: transactionOpen = true
            case .commit(_, let endLSN, _):
                transactionOpen = false
                lastCommitEnd = max(lastCommitEnd, endLSN)
            default: break
            }
            return Event(lsn: start, message: message)
        case UInt8(ascii: "k"):
            let position = LSN(try reader.integer(UInt64.self))
            serverPosition = max(serverPosition, position)
            _ = try reader.integer(Int64.self)
            let replyRequested = try reader.byte() == 1
            // Idle (no transaction open, every commit received acknowledged): the WAL up to
            // the server's position holds nothing for us, so confirm it, as pg_recvlogical
            // does. Otherwise an idle slot never advances, holds back the cluster's WAL,
            // and a fast shutdown waits for a confirmation that never comes.
            if !transactionOpen && acknowledged >= lastCommitEnd && position > acknowledged {
                acknowledged = position
                try await sendStatus(requestReply: false)
            } else if replyRequested {
                try await sendStatus(requestReply: false)
            }
            return nil
        default:
            return nil
        }
    }

    /// Reports `lsn` (a commit's end position) as processed: the server may recycle the log
    /// before it, and a reconnect resumes after it.
    public func acknowledge(_ lsn: LSN) async throws {
        acknowledged = max(acknowledged, lsn)
        try await sendStatus(requestReply: false)
    }

    /// Ends the stream and closes the connection.
    public func close() {
        connection.close()
    }

    /// A standby status update ('r'): written, flushed and applied up to ``acknowledged``.
    private func sendStatus(requestReply: Bool) async throws {
        var bytes: [UInt8] = [UInt8(ascii: "r")]
        func append(_ value: UInt64) { for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) } }
        append(acknowledged.value)
        append(acknowledged.value)
        append(acknowledged.value)
        let microseconds = Int64((Date().timeIntervalSince1970 - 946_684_800) * 1_000_000)
        append(UInt64(bitPattern: microseconds))
        bytes.append(requestReply ? 1 : 0)
        try await connection.writeCopyData(bytes)
    }
}
