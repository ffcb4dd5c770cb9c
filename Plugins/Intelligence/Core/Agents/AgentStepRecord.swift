import Foundation

/// One step as stored in `intelligence.agent_steps`.
public struct AgentStepRecord: Sendable, Equatable {
    /// The run.
    public var runID: UUID
    /// 1, 2, ... within the run.
    public var seq: Int
    /// What happened.
    public var kind: AgentStepKind
    /// Its content as JSON text (an object).
    public var contentJSON: String
    /// Tokens the step cost (model turns).
    public var tokens: Int
    /// When it was recorded.
    public var createdAt: String

    /// A step with these fields.
    public init(runID: UUID, seq: Int, kind: AgentStepKind, contentJSON: String, tokens: Int, createdAt: String) {
        self.runID = runID
        self.seq = seq
        self.kind = kind
        self.contentJSON = contentJSON
        self.tokens = tokens
        self.createdAt = createdAt
    }
}
