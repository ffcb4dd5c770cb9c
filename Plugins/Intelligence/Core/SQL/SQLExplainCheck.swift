import MeltyPostgres

/// Plans a statement with EXPLAIN, never executing it: in a read-only transaction that is
/// always rolled back, under a statement timeout, through the extended protocol (which
/// accepts exactly one statement, so nothing can ride along after a `;`).
public struct SQLExplainCheck: Sendable {
    /// The statement timeout of one check, in milliseconds.
    public var timeoutMilliseconds: Int

    /// A check with a timeout (clamped to 100...30,000 ms).
    public init(timeoutMilliseconds: Int = 3_000) {
        self.timeoutMilliseconds = min(30_000, max(100, timeoutMilliseconds))
    }

    /// Statement kinds EXPLAIN accepts.
    public static let explainable: Set<String> = ["select", "with", "insert", "update", "delete", "values", "table", "merge"]

    /// Whether `shape`'s statement is one EXPLAIN can plan.
    public static func canExplain(_ shape: SQLStatementShape) -> Bool {
        guard let keyword = shape.leadingKeyword else { return false }
        if explainable.contains(keyword) { return true }
        return shape.tokens.first?.text == "("
    }

    /// The error planning `statement` raises, or nil when it plans.
    public func failure(of statement: String, on connection: PostgresConnection) async throws -> SQLFailure? {
        do {
            try await connection.transaction(readOnly: true) { connection in
                try await connection.query("SET LOCAL statement_timeout = \(timeoutMilliseconds)")
                try await connection.query("EXPLAIN (COSTS OFF) " + statement)
                return ((), false)
            }
            return nil
        } catch let error as PostgresError where !error.isConnectionFailure {
            guard var state = error.sqlState else { throw error }
            if state == PostgresError.nulByteState { state = "22021" }
            // EXPLAIN's prefix shifts positions by its own length.
            let shift = "EXPLAIN (COSTS OFF) ".unicodeScalars.count
            let position = error.position.map { $0 > shift ? $0 - shift : 1 }
            return SQLFailure(sqlState: state, message: error.message, detail: error.detail, hint: error.hint, position: position)
        }
    }
}
