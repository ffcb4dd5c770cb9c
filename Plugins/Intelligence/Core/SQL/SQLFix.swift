/// A corrected statement that passed the EXPLAIN check (planned without error, never executed).
public struct SQLFix: Sendable, Equatable, Codable {
    /// The corrected statement.
    public var statement: String
    /// Why it should be what was meant.
    public var reason: String
    /// Always true for fixes shown: EXPLAIN planned it.
    public var checked: Bool
    /// `catalog` (the deterministic fixer) or `model`.
    public var source: String

    /// A fix.
    public init(statement: String, reason: String, checked: Bool = true, source: String = "catalog") {
        self.statement = statement
        self.reason = reason
        self.checked = checked
        self.source = source
    }
}
