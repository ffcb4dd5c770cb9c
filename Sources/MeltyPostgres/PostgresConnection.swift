import CLibPQ
import Foundation

/// A failure reported by Postgres or libpq, with the SQLSTATE when the server sent one.
public struct PostgresError: Error, CustomStringConvertible {
    /// Five-character SQLSTATE (`23505`), or `nil` for connection-level failures.
    public var sqlState: String?
    /// The server's or libpq's message.
    public var message: String

    /// `message (SQLSTATE x)`.
    public var description: String {
        sqlState.map { "\(message) (SQLSTATE \($0))" } ?? message
    }

    /// SQLSTATE of a value holding a NUL byte: Postgres's own code for bytes its text cannot hold.
    public static let nulByteState = "22021"

    /// Refuses a statement or parameter holding a NUL byte before it is sent: libpq passes
    /// C strings, so the server would see the value cut at the NUL (what is checked, hashed and
    /// stored would differ from what was sent).
    public static func refuseNUL(_ sql: String, _ parameters: [String?]) throws {
        if sql.utf8.contains(0) || parameters.contains(where: { $0?.utf8.contains(0) == true }) {
            throw PostgresError(sqlState: nulByteState, message: "a value holds a NUL byte (\\u0000), which Postgres text cannot store")
        }
    }
}

/// Rows of a completed statement, every value as text (libpq's text format).
public struct PostgresRows: Sendable {
    /// Column names in order.
    public var columns: [String]
    /// Rows, each aligned with `columns`; `nil` is SQL NULL.
    public var rows: [[String?]]
    /// The command tag (`INSERT 0 1`).
    public var commandTag: String

    /// Value of `column` in row `index`, or `nil`.
    public func value(_ column: String, row index: Int = 0) -> String? {
        guard index < rows.count, let position = columns.firstIndex(of: column) else { return nil }
        return rows[index][position]
    }
}

/// One blocking libpq connection. Not thread-safe: callers serialise access
/// (``SystemDatabase`` does so on its own queue).
public final class PostgresConnection {
    private var connection: OpaquePointer?
    /// The conninfo string or URL this connection was opened with.
    public let conninfo: String

    /// Opens a connection; throws ``PostgresError`` naming why it failed.
    public init(conninfo: String) throws {
        self.conninfo = conninfo
        connection = PQconnectdb(conninfo)
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            let message = connection.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let connection { PQfinish(connection) }
            self.connection = nil
            throw PostgresError(sqlState: nil, message: message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        // Server notices (and the FATAL sent when a server shuts down) would otherwise be
        // printed to stderr by libpq; errors reach callers as PostgresError instead.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
    }

    deinit {
        if let connection { PQfinish(connection) }
    }

    /// Whether the socket is still healthy.
    public var isHealthy: Bool {
        guard let connection else { return false }
        return PQstatus(connection) == CONNECTION_OK
    }

    /// Runs one statement with text parameters bound as `$1, $2, ...` (never interpolated).
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws -> PostgresRows {
        try PostgresError.refuseNUL(sql, parameters)
        guard let connection else { throw PostgresError(sqlState: nil, message: "connection is closed") }
        let result: OpaquePointer? = withCStrings(parameters) { pointers in
            PQexecParams(connection, sql, Int32(parameters.count), nil, pointers, nil, nil, 0)
        }
        defer { PQclear(result) }
        return try Self.rows(from: result, connection: connection)
    }

    /// Runs several `;`-separated statements without parameters (schema set-up).
    public func execute(script: String) throws {
        try PostgresError.refuseNUL(script, [])
        guard let connection else { throw PostgresError(sqlState: nil, message: "connection is closed") }
        let result = PQexec(connection, script)
        defer { PQclear(result) }
        _ = try Self.rows(from: result, connection: connection)
    }

    /// Pending `NOTIFY` payloads for channels this connection `LISTEN`s on.
    /// Waits up to `timeout` seconds for the socket to become readable.
    public func notifications(timeout: Double) throws -> [(channel: String, payload: String)] {
        guard let connection else { throw PostgresError(sqlState: nil, message: "connection is closed") }
        var pollDescriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        _ = poll(&pollDescriptor, 1, Int32(timeout * 1000))
        if PQconsumeInput(connection) == 0 {
            throw PostgresError(sqlState: nil, message: String(cString: PQerrorMessage(connection)))
        }
        var received: [(String, String)] = []
        while let notify = PQnotifies(connection) {
            received.append((String(cString: notify.pointee.relname), String(cString: notify.pointee.extra)))
            PQfreemem(notify)
        }
        return received
    }

    private static func rows(from result: OpaquePointer?, connection: OpaquePointer) throws -> PostgresRows {
        guard let result else {
            throw PostgresError(sqlState: nil, message: String(cString: PQerrorMessage(connection)))
        }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
                ?? String(cString: PQresultErrorMessage(result))
            throw PostgresError(sqlState: state, message: message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var rows: [[String?]] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            rows.append((0..<columnCount).map { column in
                PQgetisnull(result, Int32(row), Int32(column)) == 1
                    ? nil : String(cString: PQgetvalue(result, Int32(row), Int32(column)))
            })
        }
        return PostgresRows(columns: columns, rows: rows, commandTag: String(cString: PQcmdStatus(result)))
    }
}

/// Calls `body` with a C array of NUL-terminated copies of `strings` (NULL for nil).
private func withCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } }
    defer { copies.forEach { free($0) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}
