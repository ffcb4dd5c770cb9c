import CLibPQ
import Foundation

/// One libpq connection in non-blocking mode, driven by a ``PostgresEventLoop``: a query
/// sends its bytes, then suspends its task until the socket has the answer, so no thread
/// waits on Postgres. Pipelines, prepared statements (a bounded LRU per connection),
/// LISTEN/NOTIFY and cancellation (`PQcancel` when the task is cancelled) are built in.
///
/// A connection serves one task at a time (the pool hands it out exclusively); methods
/// must not be called concurrently.
public final class PostgresConnection: @unchecked Sendable {  // @unchecked: mutable state is touched only by the one task that holds the connection.
    /// The conninfo string or URL this connection was opened with.
    public let conninfo: String
    private var connection: OpaquePointer?
    private let loop: PostgresEventLoop
    private let cancelKey: CancelKey?
    private var socket: Int32

    /// Commands sent since the pool handed the connection out (a reused connection that
    /// failed on its first command ran nothing and may be retried).
    public var commandsSent = 0
    /// Whether the pool handed this connection out before.
    public var reused = false
    /// The schema generation this connection's prepared statements were made under.
    public var schemaGeneration = 0

    /// The most statements a connection keeps prepared.
    public static let preparedLimit = 256
    /// Statements prepared on this connection, by SQL text: at most ``preparedLimit``, the
    /// least recently used deallocated first, so distinct statements cannot grow the
    /// backend's memory without bound.
    private var prepared: [String: PreparedStatement] = [:]
    private struct PreparedStatement {
        var name: String
        var lastUse: Int
    }
    private var useClock = 0
    private var statementCounter = 0

    private init(conninfo: String, connection: OpaquePointer, loop: PostgresEventLoop) {
        self.conninfo = conninfo
        self.connection = connection
        self.loop = loop
        self.socket = PQsocket(connection)
        self.cancelKey = CancelKey(connection)
    }

    /// Opens a connection without blocking a thread (`PQconnectStart`/`PQconnectPoll` on
    /// `loop`); throws ``PostgresError`` naming why it failed.
    public static func connect(_ conninfo: String, on loop: PostgresEventLoop) async throws -> PostgresConnection {
        guard let connection = PQconnectStart(conninfo) else { throw PostgresError.connectionClosed("out of memory") }
        var socket: Int32 = -1
        do {
            guard PQstatus(connection) != CONNECTION_BAD else { throw PostgresError.libpq(connection) }
            var polling = PGRES_POLLING_WRITING
            while true {
                if polling == PGRES_POLLING_OK { break }
                if polling == PGRES_POLLING_FAILED { throw PostgresError.libpq(connection) }
                let current = PQsocket(connection)
                if current != socket {
                    // libpq moved to another socket (next host or address): the old one is closed.
                    loop.forget(socket)
                    socket = current
                }
                guard socket >= 0 else { throw PostgresError.libpq(connection) }
                _ = try await loop.wait(for: socket, polling == PGRES_POLLING_READING ? .readable : .writable)
                polling = PQconnectPoll(connection)
            }
            guard PQsetnonblocking(connection, 1) == 0 else { throw PostgresError.libpq(connection) }
        } catch {
            loop.forget(socket)
            PQfinish(connection)
            throw error
        }
        // Server notices (and the FATAL sent when a server shuts down) would otherwise be
        // printed to stderr by libpq; errors reach callers as PostgresError instead.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        let opened = PostgresConnection(conninfo: conninfo, connection: connection, loop: loop)
        if opened.socket != socket { loop.forget(socket) }
        return opened
    }

    deinit { close() }

    /// Closes the connection (idempotent).
    public func close() {
        guard let connection else { return }
        loop.forget(socket)
        PQfinish(connection)
        self.connection = nil
    }

    /// Whether the connection is open and libpq has not seen it break.
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

    /// The server's process id for this connection (`pg_backend_pid()`).
    public var backendPID: Int32 { connection.map { PQbackendPID($0) } ?? 0 }

    /// How many statements this connection has prepared (for tests and diagnostics).
    public var preparedCount: Int { prepared.count }

    /// Asks the server to cancel the statement this connection is running (no effect when
    /// idle). The statement then fails with SQLSTATE 57014. Called when the task running a
    /// query is cancelled.
    public func cancel() {
        if let cancelKey { loop.sendCancel(cancelKey) }
    }

    // MARK: - Statements

    /// Runs one statement with text parameters `$1...` of unknown type (Postgres infers each
    /// from its use). Values are never interpolated.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) async throws -> PostgresRows {
        try PostgresError.refuseNUL(sql, parameters)
        return try await running {
            let connection = try self.open()
            try self.send(withCStrings(parameters) { PQsendQueryParams(connection, sql, Int32(parameters.count), nil, $0, nil, nil, 0) })
            return try await self.collect()
        }
    }

    /// Like ``query(_:_:)`` through a statement prepared once per connection and SQL text.
    /// A plan invalidated by DDL (SQLSTATE 0A000 "cached plan must not change result type")
    /// is prepared again once.
    @discardableResult
    public func preparedQuery(_ sql: String, _ parameters: [String?] = []) async throws -> PostgresRows {
        try await pipeline([(sql, parameters)])[0]
    }

    /// Runs `steps` in one round trip (libpq pipeline mode), each through a prepared
    /// statement: a whole transaction costs one round trip instead of one per statement.
    /// Returns every step's result; throws the first error (later steps were skipped by the
    /// server). A transaction left failed is rolled back before returning.
    public func pipeline(_ steps: [(sql: String, parameters: [String?])]) async throws -> [PostgresRows] {
        for step in steps { try PostgresError.refuseNUL(step.sql, step.parameters) }
        // Each step counts as a command (a pool retries only a job that sent at most one).
        commandsSent += max(0, steps.count - 1)
        let outsideTransaction = !inTransaction
        do {
            return try await running { try await self.runPipeline(steps) }
        } catch let error as PostgresError where error.sqlState == "0A000" && outsideTransaction && steps.count == 1 {
            // "cached plan must not change result type": the statements were deallocated; one
            // statement outside a transaction ran nothing and is prepared and run again.
            return try await running { try await self.runPipeline(steps) }
        }
    }

    private func runPipeline(_ steps: [(sql: String, parameters: [String?])]) async throws -> [PostgresRows] {
        let connection = try open()
        let unprepared = Set(steps.map(\.sql)).filter { prepared[$0] == nil }
        if !unprepared.isEmpty { try await evictPrepared(makingRoomFor: unprepared.count, keeping: Set(steps.map(\.sql))) }
        guard PQenterPipelineMode(connection) == 1 else { throw PostgresError.libpq(connection) }
        var newlyPrepared: [String] = []
        var expectations: [Bool] = []  // per queued command: true for a step's query, false for a Parse
        var sendFailure: PostgresError?
        for step in steps {
            var name = preparedName(step.sql)
            if name == nil {
                statementCounter += 1
                let fresh = "mb\(statementCounter)"
                if PQsendPrepare(connection, fresh, step.sql, Int32(step.parameters.count), nil) != 1 {
                    sendFailure = PostgresError.libpq(connection)
                    break
                }
                expectations.append(false)
                newlyPrepared.append(step.sql)
                remember(step.sql, as: fresh)
                name = fresh
            }
            let sent = withCStrings(step.parameters) { PQsendQueryPrepared(connection, name, Int32(step.parameters.count), $0, nil, nil, 0) }
            if sent != 1 {
                sendFailure = PostgresError.libpq(connection)
                break
            }
            expectations.append(true)
        }
        if sendFailure == nil && PQpipelineSync(connection) != 1 { sendFailure = PostgresError.libpq(connection) }
        if let sendFailure {
            for sql in newlyPrepared { prepared[sql] = nil }
            _ = PQexitPipelineMode(connection)
            throw sendFailure
        }
        try await flush()
        var results: [PostgresRows] = []
        var parsedOK: [Bool] = []
        var firstError: PostgresError?
        for isQuery in expectations {
            guard let result = try await nextResult() else {
                if !isQuery { parsedOK.append(false) }
                continue
            }
            defer { PQclear(result) }
            // The NULL that ends this command.
            while let extra = try await nextResult() { PQclear(extra) }
            if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                if !isQuery { parsedOK.append(false) }
                continue
            }
            do {
                let read = try PostgresRows.read(result)
                if isQuery { results.append(read) } else { parsedOK.append(true) }
            } catch let error as PostgresError {
                if firstError == nil { firstError = error }
                if !isQuery { parsedOK.append(false) }
            }
        }
        // Statements whose Parse was skipped or failed are not prepared on the server.
        for (sql, ok) in zip(newlyPrepared, parsedOK) where !ok { prepared[sql] = nil }
        // Up to and including the sync marker.
        while let result = try await nextResult() {
            let status = PQresultStatus(result)
            PQclear(result)
            if status == PGRES_PIPELINE_SYNC { break }
        }
        _ = PQexitPipelineMode(connection)
        if let firstError {
            if inTransaction { _ = try? await runScript("ROLLBACK") }
            if firstError.sqlState == "0A000" {
                _ = try? await runScript("DEALLOCATE ALL")
                prepared.removeAll()
            }
            throw firstError
        }
        return results
    }

    /// Runs a script of `;`-separated statements without parameters (the simple protocol);
    /// returns the last statement's result, or throws the first error.
    @discardableResult
    public func execute(_ script: String) async throws -> PostgresRows {
        try PostgresError.refuseNUL(script, [])
        return try await running { try await self.runScript(script) }
    }

    private func runScript(_ script: String) async throws -> PostgresRows {
        let connection = try open()
        try send(PQsendQuery(connection, script))
        return try await collect()
    }

    /// Runs `body` in a transaction: COMMIT when it returns with `commit`, ROLLBACK when it
    /// throws or asks to.
    public func transaction<T>(readOnly: Bool = false, _ body: (PostgresConnection) async throws -> (value: T, commit: Bool)) async throws -> T {
        try await preparedQuery(readOnly ? "BEGIN READ ONLY" : "BEGIN")
        do {
            let outcome = try await body(self)
            try await preparedQuery(outcome.commit ? "COMMIT" : "ROLLBACK")
            return outcome.value
        } catch {
            if isHealthy && inTransaction { _ = try? await execute("ROLLBACK") }
            throw error
        }
    }

    /// Returns the session to its state after connecting: an open transaction is rolled back,
    /// then `DISCARD ALL` (role, settings, temporary tables, prepared statements, listens,
    /// advisory locks). For connections that ran a client's own statements (the SQL console).
    public func resetSession() async throws {
        guard let connection else { throw PostgresError.connectionClosed("connection is closed") }
        if PQtransactionStatus(connection) != PQTRANS_IDLE { _ = try? await execute("ROLLBACK") }
        try await execute("DISCARD ALL")
        prepared.removeAll()
    }

    /// Forgets every prepared statement (the schema changed).
    public func resetPrepared(generation: Int) async {
        if !prepared.isEmpty { _ = try? await execute("DEALLOCATE ALL") }
        prepared.removeAll()
        schemaGeneration = generation
    }

    // MARK: - LISTEN/NOTIFY

    /// Waits until notifications arrive on the channels this connection `LISTEN`s on and
    /// returns them (channel, payload) in order. Throws when the connection breaks.
    public func nextNotifications() async throws -> [(channel: String, payload: String)] {
        let connection = try open()
        while true {
            var received: [(String, String)] = []
            if PQconsumeInput(connection) == 0 || PQstatus(connection) != CONNECTION_OK { throw PostgresError.libpq(connection) }
            while let notify = PQnotifies(connection) {
                received.append((String(cString: notify.pointee.relname), String(cString: notify.pointee.extra)))
                PQfreemem(notify)
            }
            if !received.isEmpty { return received }
            // Cancelling the task (the listener stops) ends the wait.
            _ = try await loop.wait(for: socket, .readable, cancellable: true)
        }
    }

    // MARK: - Replication (COPY BOTH)

    /// Starts a COPY BOTH stream (`START_REPLICATION` on a replication connection).
    func startCopyBoth(_ command: String) async throws {
        let connection = try open()
        try send(PQsendQuery(connection, command))
        guard let result = try await nextResult() else { throw PostgresError.connectionClosed("the server ended the replication command without an answer") }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_COPY_BOTH else {
            let error = (try? PostgresRows.read(result)).map { _ in PostgresError.connectionClosed("the server did not start streaming") } ?? PostgresError.from(result: result)
            while let more = try await nextResult() { PQclear(more) }
            throw error
        }
    }

    /// The next CopyData message of a COPY BOTH stream, or nil when the stream ended.
    func readCopyData() async throws -> [UInt8]? {
        let connection = try open()
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(connection, &buffer, 1)
            if length > 0, let buffer {
                defer { PQfreemem(buffer) }
                return Array(UnsafeRawBufferPointer(start: buffer, count: Int(length)))
            }
            if length == -1 {
                // The stream ended: read the final result (an error names why).
                while let result = try await nextResult() {
                    defer { PQclear(result) }
                    if PQresultStatus(result) == PGRES_FATAL_ERROR { throw PostgresError.from(result: result) }
                }
                return nil
            }
            if length == -2 { throw PostgresError.libpq(connection) }
            _ = try await loop.wait(for: socket, .readable)
            if PQconsumeInput(connection) == 0 { throw PostgresError.libpq(connection) }
        }
    }

    /// The next CopyData message if one has fully arrived, without waiting: `.some(nil)` when
    /// none is there yet; nil (the outer optional) when the stream ended.
    func readCopyDataIfAvailable() throws -> [UInt8]?? {
        let connection = try open()
        if PQconsumeInput(connection) == 0 { throw PostgresError.libpq(connection) }
        var buffer: UnsafeMutablePointer<CChar>?
        let length = PQgetCopyData(connection, &buffer, 1)
        if length > 0, let buffer {
            defer { PQfreemem(buffer) }
            return .some(Array(UnsafeRawBufferPointer(start: buffer, count: Int(length))))
        }
        if length == -1 { return nil }
        if length == -2 { throw PostgresError.libpq(connection) }
        return .some(nil)
    }

    /// Sends one CopyData message of a COPY BOTH stream.
    func writeCopyData(_ bytes: [UInt8]) async throws {
        let connection = try open()
        let status = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { PQputCopyData(connection, $0.baseAddress, Int32($0.count)) }
        }
        guard status == 1 else { throw PostgresError.libpq(connection) }
        try await flush()
    }

    // MARK: - Driving libpq

    private func open() throws -> OpaquePointer {
        guard let connection, PQstatus(connection) == CONNECTION_OK else { throw PostgresError.connectionClosed("connection is closed") }
        return connection
    }

    /// Runs `operation` as one command: counts it, refuses to start when the task is already
    /// cancelled, and turns cancellation of the task while it runs into `PQcancel`.
    private func running<T>(_ operation: () async throws -> T) async throws -> T {
        commandsSent += 1
        if Task.isCancelled { throw PostgresError(sqlState: "57014", message: "canceling statement due to user request") }
        return try await withTaskCancellationHandler {
            try await operation()
        } onCancel: {
            self.cancel()
        }
    }

    private func send(_ accepted: Int32) throws {
        guard accepted == 1 else { throw PostgresError.libpq(connection) }
    }

    /// Sends what libpq buffered, waiting for the socket when the kernel's buffer is full
    /// (and reading meanwhile, so the server never blocks on us).
    private func flush() async throws {
        let connection = try open()
        while true {
            let status = PQflush(connection)
            if status == 0 { return }
            if status < 0 { throw PostgresError.libpq(connection) }
            let ready = try await loop.wait(for: socket, [.readable, .writable])
            if ready.contains(.readable) && PQconsumeInput(connection) == 0 { throw PostgresError.libpq(connection) }
        }
    }

    /// The next result, suspending (not blocking) until it has arrived; nil ends a command.
    private func nextResult() async throws -> OpaquePointer? {
        let connection = try open()
        while PQisBusy(connection) == 1 {
            _ = try await loop.wait(for: socket, .readable)
            if PQconsumeInput(connection) == 0 { throw PostgresError.libpq(connection) }
        }
        return PQgetResult(connection)
    }

    /// Flushes, then reads every result of one command: the last success, or the first error.
    private func collect() async throws -> PostgresRows {
        try await flush()
        var last = PostgresRows()
        var failure: PostgresError?
        while let result = try await nextResult() {
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            if status == PGRES_COPY_IN {
                // COPY FROM STDIN has no data source here: end it with an error.
                _ = PQputCopyEnd(connection, "COPY FROM STDIN is not supported on this connection")
                try await flush()
                continue
            }
            if status == PGRES_COPY_OUT {
                try await drainCopyOut()
                continue
            }
            if status == PGRES_COPY_BOTH {
                close()
                throw PostgresError(sqlState: "0A000", message: "a replication stream cannot run on this connection")
            }
            do {
                let read = try PostgresRows.read(result)
                if failure == nil { last = read }
            } catch let error as PostgresError {
                if failure == nil { failure = error }
            }
        }
        if let failure { throw failure }
        return last
    }

    private func drainCopyOut() async throws {
        let connection = try open()
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(connection, &buffer, 1)
            if let buffer { PQfreemem(buffer) }
            if length == -1 { return }
            if length == -2 { throw PostgresError.libpq(connection) }
            if length == 0 {
                _ = try await loop.wait(for: socket, .readable)
                if PQconsumeInput(connection) == 0 { throw PostgresError.libpq(connection) }
            }
        }
    }

    // MARK: - Prepared-statement cache

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
    private func evictPrepared(makingRoomFor incoming: Int, keeping: Set<String>) async throws {
        guard prepared.count + incoming > Self.preparedLimit else { return }
        let excess = prepared.count + incoming - Self.preparedLimit * 3 / 4
        let victims = prepared.filter { !keeping.contains($0.key) }.sorted { $0.value.lastUse < $1.value.lastUse }.prefix(excess)
        guard !victims.isEmpty else { return }
        for victim in victims { prepared[victim.key] = nil }
        _ = try? await runScript(victims.map { "DEALLOCATE " + SQL.ident($0.value.name) }.joined(separator: "; "))
    }
}

/// Calls `body` with a C array of NUL-terminated copies of `strings` (NULL for nil); libpq
/// copies them into its send buffer before returning.
func withCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } }
    defer { copies.forEach { free($0) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}
