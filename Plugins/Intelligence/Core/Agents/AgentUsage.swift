/// What a run spent so far (its own turns plus what its sub-agents spent).
public struct AgentUsage: Sendable, Equatable, Codable {
    /// Model turns.
    public var steps: Int
    /// Tokens.
    public var tokens: Int
    /// Milliseconds of wall-clock time.
    public var wallClockMilliseconds: Int

    /// Usage of these figures.
    public init(steps: Int = 0, tokens: Int = 0, wallClockMilliseconds: Int = 0) {
        self.steps = steps
        self.tokens = tokens
        self.wallClockMilliseconds = wallClockMilliseconds
    }

    /// `self` plus `other`'s steps and tokens (a child's wall clock ran alongside the parent's).
    public func charging(_ other: AgentUsage) -> AgentUsage {
        AgentUsage(steps: steps.addingSaturated(other.steps), tokens: tokens.addingSaturated(other.tokens), wallClockMilliseconds: wallClockMilliseconds)
    }
}
