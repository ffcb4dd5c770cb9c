import CLibPQ
import Foundation

/// A failure reported by Postgres or libpq, with every field the server sent.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    /// Five-character SQLSTATE (`23505`); nil for connection-level failures (libpq could not
    /// reach the server, or the connection broke).
    public var sqlState: String?
    /// The server's or libpq's message.
    public var message: String
    /// The server's DETAIL line.
    public var detail: String?
    /// The server's HINT line.
    public var hint: String?
    /// 1-based character position in the statement, when the server gave one.
    public var position: Int?

    /// An error with these fields.
    public init(sqlState: String?, message: String, detail: String? = nil, hint: String? = nil, position: Int? = nil) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
        self.position = position
    }

    /// `message (SQLSTATE x)`.
    public var description: String { sqlState.map { "\(message) (SQLSTATE \($0))" } ?? message }

    /// True when the server is unreachable (no SQLSTATE, or class 08 / 57P0x shutdown).
    public var isConnectionFailure: Bool {
        guard let sqlState else { return true }
        return sqlState.hasPrefix("08") || sqlState == "57P01" || sqlState == "57P02" || sqlState == "57P03"
    }

    /// SQLSTATE 57014: the statement was cancelled (a timeout, or ``PostgresConnection/cancel()``).
    public var isCancellation: Bool { sqlState == "57014" }

    /// SQLSTATE of a value holding a NUL byte: Postgres's own code for bytes its text cannot hold.
    public static let nulByteState = "22021"

    /// Refuses a statement or parameter holding a NUL byte before it is sent: libpq passes
    /// C strings, so the server would see the value cut at the NUL (what is checked, hashed and
    /// stored would differ from what was sent).
    public static func refuseNUL(_ sql: String, _ parameters: [String?]) throws {
        if sql.utf8.contains(0) || parameters.contains(where: { $0?.utf8.contains(0) == true }) {
            throw PostgresError(
                sqlState: nulByteState, message: "a value holds a NUL byte (\\u0000), which Postgres text cannot store",
                hint: "remove the NUL character from the value")
        }
    }

    /// A connection-level failure (no SQLSTATE).
    static func connectionClosed(_ message: String) -> PostgresError {
        PostgresError(sqlState: nil, message: message)
    }

    /// libpq's message for `connection`, trimmed.
    static func libpq(_ connection: OpaquePointer?) -> PostgresError {
        let text = connection.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
        return PostgresError(
            sqlState: nil,
            message: text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? "the connection to Postgres failed" : text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The error fields of a failed result.
    static func from(result: OpaquePointer) -> PostgresError {
        func field(_ code: UInt8) -> String? { PQresultErrorField(result, Int32(code)).map { String(cString: $0) } }
        let message = field(UInt8(ascii: "M")) ?? String(cString: PQresultErrorMessage(result))
        return PostgresError(
            sqlState: field(UInt8(ascii: "C")), message: message.trimmingCharacters(in: .whitespacesAndNewlines),
            detail: field(UInt8(ascii: "D")), hint: field(UInt8(ascii: "H")),
            position: field(UInt8(ascii: "P")).flatMap { Int($0) })
    }
}
