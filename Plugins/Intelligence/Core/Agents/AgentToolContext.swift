/// What a tool call sees of its run.
public struct AgentToolContext: Sendable {
    /// The run (its caller, tools, budget).
    public var run: AgentRunRecord
    /// What the call may hand a sub-agent: the run's remaining budget, or its share of it
    /// when the model started several sub-agents in one turn.
    public var available: AgentBudget

    /// A context of these.
    public init(run: AgentRunRecord, available: AgentBudget) {
        self.run = run
        self.available = available
    }
}
