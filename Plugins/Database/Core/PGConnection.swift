import CLibPQ
import Foundation


/// A failure reported by Postgres or libpq, with every field the server sent.
public struct PGError: Error, CustomStringConvertible {
    /// SQLSTATE (`23505`), nil for connection-level failures (libpq could not reach the server).
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var hint: String?
    /// 1-based character position in the statement, when the server gave one.
    public var position: Int?

    public var description: String { sqlState.map { "\(message) (SQLSTATE \($0))" } ?? message }

    /// True when the server is unreachable (no SQLSTATE, or class 08 / 57P0x shutdown).
    public var isConnectionFailure: Bool {
        guard let sqlState else { return true }
        return sqlState.hasPrefix("08") || sqlState == "57P01" || sqlState == "57P02" || sqlState == "57P03"
    }

    /// SQLSTATE of a value holding a NUL byte: Postgres's own code for bytes its text cannot hold.
    public static let nulByteState = "22021"

    /// Refuses a statement or parameter holding a NUL byte before it is sent: libpq passes
    /// C strings, so the server would see the value cut at the NUL (what is checked, hashed and
    /// stored would differ from what was sent).
    public static func refuseNUL(_ sql: String, _ parameters: [String?]) throws {
        if sql.utf8.contains(0) || parameters.contains(where: { $0?.utf8.contains(0) == true }) {
            throw PGError(sqlState: nulByteState, message: "a value holds a NUL byte (\\u0000), which Postgres text cannot store",
                          hint: "remove the NUL character from the value")
        }
    }
}

/// Rows of a completed statement in libpq's text format.
public struct PGResult {
    public var columns: [String]
    /// Type OIDs aligned with `columns`.
    public var types: [UInt32]
    public var rows: [[String?]]
    public var commandTag: String

    /// The first column of the first row.
    public var scalar: String? { rows.first?.first ?? nil }
}

/// One blocking libpq connection; not thread-safe (the pool hands it to one job at a time).
public final class PGConnection {
    private var connection: OpaquePointer?
    public let conninfo: String
    /// Statements prepared on this connection, by SQL text (the prepared-statement cache): at
    /// most `preparedLimit`, the least recently used deallocated first, so distinct statements
    /// (say, `select=` lists a client makes up) cannot grow the backend's memory without bound.
    private var prepared: [String: PreparedStatement] = [:]
    private struct PreparedStatement {
        var name: String
        var lastUse: Int
    }
    /// The most statements a connection keeps prepared.
    public static let preparedLimit = 256
    private var useClock = 0

    /// The name of `sql`'s prepared statement, marked as just used; nil when not prepared.
    private func preparedName(_ sql: String) -> String? {
        guard var statement = prepared[sql] else { return nil }
        useClock += 1
        statement.lastUse = useClock
        prepared[sql] = statement
        return statement.name
    }

    private func remember(_ sql: String, as name: String) {
        useClock += 1
        prepared[sql] = PreparedStatement(name: name, lastUse: useClock)
    }

    /// Makes room for `incoming` new statements: when the cache would pass its limit, the least
    /// recently used quarter (never one of `keeping`) is deallocated on the server in one round trip.
    private func evictPrepared(makingRoomFor incoming: Int, keeping: Set<String> = []) {
        guard prepared.count + incoming > Self.preparedLimit else { return }
        let excess = prepared.count + incoming - Self.preparedLimit * 3 / 4
        let victims = prepared.filter { !keeping.contains($0.key) }.sorted { $0.value.lastUse < $1.value.lastUse }.prefix(excess)
        guard !victims.isEmpty else { return }
        for victim in victims { prepared[victim.key] = nil }
        _ = try? execute(victims.map { "DEALLOCATE " + SQL.ident($0.value.name) }.joined(separator: "; "))
    }

    /// How many statements this connection has prepared (for tests and diagnostics).
    public var preparedCount: Int { prepared.count }
    /// Names prepared statements uniquely for the life of the connection.
    private var statementCounter = 0
    private func nextStatementName() -> String {
        statementCounter += 1
        return "mb\(statementCounter)"
    }

    public init(conninfo: String) throws {
        self.conninfo = conninfo
        connection = PQconnectdb(conninfo)
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            let message = connection.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let connection { PQfinish(connection) }
            self.connection = nil
            throw PGError(sqlState: nil, message: message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
    }

    deinit { if let connection { PQfinish(connection) } }

    public var isHealthy: Bool { connection.map { PQstatus($0) == CONNECTION_OK } ?? false }

    /// Whether the server is still there: reads what the socket holds without blocking, so a
    /// connection whose server died (it sent a FATAL, or the socket closed) reports false.
    public var isAlive: Bool {
        guard let connection, PQstatus(connection) == CONNECTION_OK else { return false }
        guard PQconsumeInput(connection) == 1, PQstatus(connection) == CONNECTION_OK else { return false }
        // An idle connection has no results to read; one that has got an unsolicited
        // error (e.g. "terminating connection due to unexpected postmaster exit").
        if PQisBusy(connection) == 0, let result = PQgetResult(connection) {
            PQclear(result)
            while let more = PQgetResult(connection) { PQclear(more) }
            return false
        }
        return true
    }

    /// Whether a transaction is open (idle in transaction or failed in one).
    public var inTransaction: Bool {
        guard let connection else { return false }
        let status = PQtransactionStatus(connection)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR
    }

    /// Runs one statement with text parameters `$1...` of unknown type (Postgres infers
    /// each from its use, as PostgREST's bound values are). Values are never interpolated.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws -> PGResult {
        try PGError.refuseNUL(sql, parameters)
        commandsSent += 1
        guard let connection else { throw PGError(sqlState: nil, message: "connection is closed") }
        let copies: [UnsafeMutablePointer<CChar>?] = parameters.map { $0.map { strdup($0) } }
        defer { copies.forEach { free($0) } }
        let pointers = copies.map { $0.map { UnsafePointer($0) } }
        let result = PQexecParams(connection, sql, Int32(parameters.count), nil, pointers, nil, nil, 0)
        defer { PQclear(result) }
        return try Self.read(result, connection: connection)
    }

    /// Like ``query(_:_:)`` through a statement prepared once per connection and SQL text.
    /// A plan invalidated by DDL (SQLSTATE 0A000 "cached plan must not change result type")
    /// is prepared again once.
    @discardableResult
    public func preparedQuery(_ sql: String, _ parameters: [String?]) throws -> PGResult {
        try PGError.refuseNUL(sql, parameters)
        commandsSent += 1
        guard let connection else { throw PGError(sqlState: nil, message: "connection is closed") }
        for attempt in 0..<2 {
            let name: String
            if let existing = preparedName(sql) {
                name = existing
            } else {
                evictPrepared(makingRoomFor: 1)
                name = nextStatementName()
                let result = PQprepare(connection, name, sql, Int32(parameters.count), nil)
                defer { PQclear(result) }
                _ = try Self.read(result, connection: connection)
                remember(sql, as: name)
            }
            let copies: [UnsafeMutablePointer<CChar>?] = parameters.map { $0.map { strdup($0) } }
            defer { copies.forEach { free($0) } }
            let pointers = copies.map { $0.map { UnsafePointer($0) } }
            let result = PQexecPrepared(connection, name, Int32(parameters.count), pointers, nil, nil, 0)
            defer { PQclear(result) }
            do {
                return try Self.read(result, connection: connection)
            } catch let error as PGError where error.sqlState == "0A000" {
                prepared[sql] = nil
                if inTransaction || attempt > 0 { throw error }
                _ = try? query("DEALLOCATE " + SQL.ident(name))
            }
        }
        throw PGError(sqlState: nil, message: "statement could not be prepared")
    }

    /// Commands sent since the pool last handed the connection out: a failure on the first
    /// one means nothing ran, so the job may safely run again on a fresh connection.
    public var commandsSent = 0
    /// Whether the pool handed this connection out before (it may have gone stale).
    public var reused = false

    /// Sends `steps` (each prepared once per connection, like ``preparedQuery(_:_:)``) in one
    /// libpq pipeline: one round trip for a whole transaction instead of one per statement.
    /// Returns every step's result; throws the first error (later steps were skipped by the
    /// server). A transaction left failed is rolled back before returning.
    public func pipeline(_ steps: [(sql: String, parameters: [String?])]) throws -> [PGResult] {
        for step in steps { try PGError.refuseNUL(step.sql, step.parameters) }
        commandsSent += steps.count
        guard let connection else { throw PGError(sqlState: nil, message: "connection is closed") }
        let unprepared = Set(steps.map(\.sql)).filter { prepared[$0] == nil }
        if !unprepared.isEmpty { evictPrepared(makingRoomFor: unprepared.count, keeping: Set(steps.map(\.sql))) }
        guard PQenterPipelineMode(connection) == 1 else { throw PGError(sqlState: nil, message: String(cString: PQerrorMessage(connection))) }
        var newlyPrepared: [String] = []
        var expectations: [Bool] = []   // per queued command: true for a step's query, false for a Parse
        var parsedOK: [Bool] = []       // per Parse, in order: whether the server prepared it
        var sendFailure: PGError?
        for step in steps {
            var name = preparedName(step.sql)
            if name == nil {
                let fresh = nextStatementName()
                if PQsendPrepare(connection, fresh, step.sql, Int32(step.parameters.count), nil) != 1 {
                    sendFailure = PGError(sqlState: nil, message: String(cString: PQerrorMessage(connection)))
                    break
                }
                expectations.append(false)
                newlyPrepared.append(step.sql)
                remember(step.sql, as: fresh)
                name = fresh
            }
            let copies: [UnsafeMutablePointer<CChar>?] = step.parameters.map { $0.map { strdup($0) } }
            let pointers = copies.map { $0.map { UnsafePointer($0) } }
            let sent = PQsendQueryPrepared(connection, name, Int32(step.parameters.count), pointers, nil, nil, 0)
            copies.forEach { free($0) }
            if sent != 1 {
                sendFailure = PGError(sqlState: nil, message: String(cString: PQerrorMessage(connection)))
                break
            }
            expectations.append(true)
        }
        if sendFailure == nil && PQpipelineSync(connection) != 1 {
            sendFailure = PGError(sqlState: nil, message: String(cString: PQerrorMessage(connection)))
        }
        if let sendFailure {
            for sql in newlyPrepared { prepared[sql] = nil }
            _ = PQexitPipelineMode(connection)
            throw sendFailure
        }
        var results: [PGResult] = []
        var firstError: PGError?
        for isQuery in expectations {
            guard let result = PQgetResult(connection) else {
                if !isQuery { parsedOK.append(false) }
                continue
            }
            defer { PQclear(result) }
            while let extra = PQgetResult(connection) { PQclear(extra) }   // the NULL that ends this command
            if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                if !isQuery { parsedOK.append(false) }
                continue
            }
            do {
                let read = try Self.read(result, connection: connection)
                if isQuery { results.append(read) } else { parsedOK.append(true) }
            } catch let error as PGError {
                if firstError == nil { firstError = error }
                if !isQuery { parsedOK.append(false) }
            }
        }
        // Statements whose Parse was skipped or failed are not prepared on the server.
        for (sql, ok) in zip(newlyPrepared, parsedOK) where !ok { prepared[sql] = nil }
        // Up to and including the sync marker.
        while let result = PQgetResult(connection) {
            let status = PQresultStatus(result)
            PQclear(result)
            if status == PGRES_PIPELINE_SYNC { break }
        }
        _ = PQexitPipelineMode(connection)
        if firstError?.sqlState == "0A000" { resetPrepared(generation: schemaGeneration) }
        if let firstError {
            if inTransaction { _ = try? query("ROLLBACK") }
            throw firstError
        }
        return results
    }

    /// The schema generation this connection's prepared statements were made under.
    public var schemaGeneration = 0

    /// Forgets every prepared statement (the schema changed).
    public func resetPrepared(generation: Int) {
        if !prepared.isEmpty { _ = try? query("DEALLOCATE ALL") }
        prepared.removeAll()
        schemaGeneration = generation
    }

    /// Runs `body` in a transaction: COMMIT when it returns, ROLLBACK when it throws or asks to.
    public func transaction<T>(readOnly: Bool = false, _ body: (PGConnection) throws -> (value: T, commit: Bool)) throws -> T {
        try preparedQuery(readOnly ? "BEGIN READ ONLY" : "BEGIN", [])
        do {
            let outcome = try body(self)
            try preparedQuery(outcome.commit ? "COMMIT" : "ROLLBACK", [])
            return outcome.value
        } catch {
            if isHealthy { _ = try? query("ROLLBACK") }
            throw error
        }
    }

    /// Runs a script of `;`-separated statements without parameters; returns the last result.
    @discardableResult
    public func execute(_ script: String) throws -> PGResult {
        try PGError.refuseNUL(script, [])
        commandsSent += 1
        guard let connection else { throw PGError(sqlState: nil, message: "connection is closed") }
        guard PQsendQuery(connection, script) == 1 else {
            throw PGError(sqlState: nil, message: String(cString: PQerrorMessage(connection)))
        }
        var last = PGResult(columns: [], types: [], rows: [], commandTag: "")
        var failure: PGError?
        while let result = PQgetResult(connection) {
            defer { PQclear(result) }
            do {
                let read = try Self.read(result, connection: connection)
                if failure == nil { last = read }
            } catch let error as PGError {
                if failure == nil { failure = error }
            }
        }
        if let failure { throw failure }
        return last
    }

    /// Waits up to `timeout` seconds for notifications on the channels this connection listens to.
    public func notifications(timeout: Double) throws -> [String] {
        guard let connection else { throw PGError(sqlState: nil, message: "connection is closed") }
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        _ = poll(&descriptor, 1, Int32(timeout * 1000))
        if PQconsumeInput(connection) == 0 || PQstatus(connection) != CONNECTION_OK {
            throw PGError(sqlState: nil, message: String(cString: PQerrorMessage(connection)))
        }
        var channels: [String] = []
        while let notify = PQnotifies(connection) {
            channels.append(String(cString: notify.pointee.relname))
            PQfreemem(notify)
        }
        return channels
    }

    private static func field(_ result: OpaquePointer, _ code: Character) -> String? {
        PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
    }

    private static func read(_ result: OpaquePointer?, connection: OpaquePointer) throws -> PGResult {
        guard let result else { throw PGError(sqlState: nil, message: String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
            let message = field(result, "M") ?? String(cString: PQresultErrorMessage(result))
            throw PGError(sqlState: field(result, "C"), message: message.trimmingCharacters(in: .whitespacesAndNewlines),
                          detail: field(result, "D"), hint: field(result, "H"), position: field(result, "P").flatMap { Int($0) })
        }
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        let types = (0..<columnCount).map { UInt32(PQftype(result, Int32($0))) }
        var rows: [[String?]] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            rows.append((0..<columnCount).map { column in
                PQgetisnull(result, Int32(row), Int32(column)) == 1 ? nil : String(cString: PQgetvalue(result, Int32(row), Int32(column)))
            })
        }
        return PGResult(columns: columns, types: types, rows: rows, commandTag: String(cString: PQcmdStatus(result)))
    }
}

/// Builds libpq conninfo strings from another one, overriding keys (dbname, user).
public enum Conninfo {
    /// `base` (key=value or URI) with `overrides` applied, as a key=value string.
    public static func derive(_ base: String, overrides: [String: String]) -> String {
        var options: [(String, String)] = []
        var error: UnsafeMutablePointer<CChar>?
        if let parsed = PQconninfoParse(base, &error) {
            var cursor = parsed
            while let keyword = cursor.pointee.keyword {
                if let value = cursor.pointee.val { options.append((String(cString: keyword), String(cString: value))) }
                cursor += 1
            }
            PQconninfoFree(parsed)
        }
        if let error { PQfreemem(error) }
        options.removeAll { overrides[$0.0] != nil }
        options += overrides.sorted { $0.key < $1.key }
        return options.map { "\($0.0)='\(escape($0.1))'" }.joined(separator: " ")
    }

    private static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
    }
}

/// SQL text helpers: identifiers are always quoted, literals only where Postgres cannot bind.
public enum SQL {
    /// `"name"` with embedded quotes doubled.
    public static func ident(_ name: String) -> String { "\"" + doubling(name, UInt8(ascii: "\"")) + "\"" }
    /// `'text'` with quotes doubled (only for DDL, where parameters are not allowed).
    public static func literal(_ text: String) -> String { "'" + doubling(text, UInt8(ascii: "'")) + "'" }

    /// `text` with every `quote` byte doubled (a byte scan: Foundation's replace is slow on Linux,
    /// and this runs for every identifier of every request).
    static func doubling(_ text: String, _ quote: UInt8) -> String {
        guard text.utf8.contains(quote) else { return text }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 4)
        for byte in text.utf8 {
            bytes.append(byte)
            if byte == quote { bytes.append(quote) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
