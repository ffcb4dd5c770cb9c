/// Which budget a run exhausted, with the figures (the run's `reason`).
public struct AgentBudgetOverrun: Sendable, Equatable {
    /// The three budgets.
    public enum Budget: String, Sendable {
        /// Model turns.
        case steps
        /// Tokens.
        case tokens
        /// Wall-clock time.
        case wallClock = "wall_clock"
    }

    /// The exhausted budget.
    public var budget: Budget
    /// Its limit.
    public var limit: Int
    /// What was used.
    public var used: Int

    /// `steps budget exhausted: 3 of 3 steps used`, ...
    public var reason: String {
        switch budget {
        case .steps: "steps budget exhausted: \(used) of \(limit) steps used"
        case .tokens: "tokens budget exceeded: \(used) tokens used, the budget is \(limit)"
        case .wallClock: "wall_clock budget exceeded: \(used) ms used, the budget is \(limit) ms"
        }
    }
}
