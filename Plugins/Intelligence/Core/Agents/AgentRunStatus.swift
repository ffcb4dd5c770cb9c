/// Where a run stands.
public enum AgentRunStatus: String, Sendable, Codable, CaseIterable {
    /// Created, not yet picked up.
    case queued
    /// Being worked on (or orphaned by a dead kernel until it is resumed).
    case running
    /// A SQL write waits for an administrator's decision.
    case waitingApproval = "waiting_approval"
    /// Answered.
    case succeeded
    /// Stopped by an error (the model provider failed, ...).
    case failed
    /// Cancelled by a caller or with its parent.
    case cancelled
    /// A budget ran out (the reason names it).
    case budgetExceeded = "budget_exceeded"

    /// True once the run can change no more.
    public var isTerminal: Bool {
        switch self {
        case .queued, .running, .waitingApproval: false
        case .succeeded, .failed, .cancelled, .budgetExceeded: true
        }
    }
}
