/// How a tool call ended.
public enum AgentToolOutcome: Sendable, Equatable {
    /// A result for the model (`ok` false: a failure it may react to), and what it cost
    /// (a sub-agent's turns and tokens).
    case observation(String, ok: Bool, charged: AgentUsage)
    /// A SQL write waits for approval: the run pauses (`waiting_approval`).
    case awaitingApproval(String)
}
