/// What kind of step a run recorded.
public enum AgentStepKind: String, Sendable, Codable, CaseIterable {
    /// A model turn that calls tools (the assistant message).
    case plan
    /// A tool call about to run.
    case toolCall = "tool_call"
    /// A tool's result.
    case observation
    /// The final answer.
    case answer
    /// A sub-agent was started.
    case subAgent = "sub_agent"
    /// A SQL write asked for approval, or was decided.
    case approval
    /// Something failed (the run's end, or a note).
    case error
}
