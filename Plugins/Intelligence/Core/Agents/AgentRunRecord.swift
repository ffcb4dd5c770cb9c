import Foundation

/// One run as stored in `intelligence.agent_runs`.
public struct AgentRunRecord: Sendable, Equatable {
    /// The run's id.
    public var id: UUID
    /// The run that spawned it (nil for a root run).
    public var parentID: UUID?
    /// The root of its tree (itself for a root run).
    public var rootID: UUID
    /// The parent's tool call that spawned it.
    public var parentCallID: String?
    /// What the run is asked to do.
    public var goal: String
    /// The tools it may call.
    public var tools: [String]
    /// Where it stands.
    public var status: AgentRunStatus
    /// Why it stopped (or is waiting).
    public var reason: String?
    /// What it may spend.
    public var budget: AgentBudget
    /// What it spent.
    public var usage: AgentUsage
    /// Who started it.
    public var caller: AgentCaller
    /// The final answer.
    public var answer: String?
    /// Timestamps as Postgres wrote them.
    public var createdAt: String
    /// Last change.
    public var updatedAt: String
    /// When it ended.
    public var finishedAt: String?
    /// The instance whose lease it is on (nil when none works on it).
    public var owner: String?

    /// A record with these fields.
    public init(
        id: UUID, parentID: UUID?, rootID: UUID, parentCallID: String?, goal: String, tools: [String], status: AgentRunStatus, reason: String?,
        budget: AgentBudget, usage: AgentUsage, caller: AgentCaller, answer: String?, createdAt: String, updatedAt: String, finishedAt: String?,
        owner: String? = nil
    ) {
        self.id = id
        self.parentID = parentID
        self.rootID = rootID
        self.parentCallID = parentCallID
        self.goal = goal
        self.tools = tools
        self.status = status
        self.reason = reason
        self.budget = budget
        self.usage = usage
        self.caller = caller
        self.answer = answer
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.finishedAt = finishedAt
        self.owner = owner
    }
}
