/// What the catalog says about one failure: its category, an explanation, statements only an
/// admin can run (unchecked), and candidate rewrites still to be checked with EXPLAIN.
public struct SQLFixPlan: Sendable {
    /// A rewrite of the statement and why.
    public struct Candidate: Sendable, Equatable {
        /// The rewritten statement.
        public var statement: String
        /// Why this could be what was meant.
        public var reason: String
    }

    /// See ``SQLDiagnosis/category``.
    public var category: String
    /// The explanation shown to the user.
    public var explanation: String
    /// Grants, policies or DDL an admin could run (never checked or executed).
    public var remedies: [String] = []
    /// Rewrites, most likely first.
    public var candidates: [Candidate] = []

    /// A plan.
    public init(category: String, explanation: String, remedies: [String] = [], candidates: [Candidate] = []) {
        self.category = category
        self.explanation = explanation
        self.remedies = remedies
        self.candidates = candidates
    }

    /// Adds the rewrite `edits` of `shape` with `reason` (duplicates are skipped).
    mutating func add(_ edits: [SQLEdit], to shape: SQLStatementShape, reason: String) {
        let statement = SQLEdit.apply(edits, to: shape.sql)
        guard statement != shape.sql, !candidates.contains(where: { $0.statement == statement }) else { return }
        candidates.append(Candidate(statement: statement, reason: reason))
    }
}
