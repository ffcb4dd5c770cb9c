/// What went wrong with a statement, in words a user can act on.
public struct SQLDiagnosis: Sendable, Equatable, Codable {
    /// A stable name: `undefined_column`, `undefined_table`, `undefined_function`,
    /// `grouping_error`, `invalid_input`, `datatype_mismatch`, `ambiguous_column`,
    /// `syntax_error`, `unique_violation`, `foreign_key_violation`, `not_null_violation`,
    /// `check_violation`, `permission_denied`, `rls_denied`, `cardinality_violation`,
    /// `division_by_zero`, `no_error`, `not_explainable`, `other`.
    public var category: String
    /// The SQLSTATE (empty for `no_error`).
    public var sqlState: String
    /// Postgres's message.
    public var message: String
    /// The explanation: what the catalog says about it.
    public var explanation: String
    /// Statements an admin could run that cannot be checked with EXPLAIN (grants, policies,
    /// DDL); never executed by the diagnosis.
    public var remedies: [String]

    /// A diagnosis.
    public init(category: String, sqlState: String, message: String, explanation: String, remedies: [String] = []) {
        self.category = category
        self.sqlState = sqlState
        self.message = message
        self.explanation = explanation
        self.remedies = remedies
    }

    enum CodingKeys: String, CodingKey {
        case category, message, explanation, remedies
        case sqlState = "sqlstate"
    }
}
