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
                // `$n` parameters are bound as NULLs of unknown type, so a parameterised statement
                // is planned (or refused for what is really wrong) instead of failing the protocol.
                try await connection.query("EXPLAIN (COSTS OFF) " + statement, Array(repeating: nil, count: Self.parameterCount(statement)))
                return ((), false)
            }
            return nil
        } catch let error as PostgresError where !error.isConnectionFailure || error.sqlState == "08P01" {
            guard var state = error.sqlState else { throw error }
            if state == PostgresError.nulByteState { state = "22021" }
            // EXPLAIN's prefix shifts positions by its own length.
            let shift = "EXPLAIN (COSTS OFF) ".unicodeScalars.count
            let position = error.position.map { $0 > shift ? $0 - shift : 1 }
            return SQLFailure(sqlState: state, message: error.message, detail: error.detail, hint: error.hint, position: position)
        }
    }

    /// The highest `$n` the statement uses (0 when none, or when one is beyond Postgres's
    /// 65,535 parameters: the server then names it).
    static func parameterCount(_ statement: String) -> Int {
        var highest = 0
        for token in SQLTokenizer.tokens(statement) where token.kind == .parameter {
            guard let number = Int(token.text.dropFirst()), number <= 65_535 else { return 0 }
            highest = max(highest, number)
        }
        return highest
    }
}
