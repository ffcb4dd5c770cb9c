/// What a run may spend: model turns, tokens and wall-clock time. Every figure is at least 1
/// when it comes from ``clamped(maximum:)``; the arithmetic saturates instead of overflowing.
public struct AgentBudget: Sendable, Equatable, Codable {
    /// Model turns (each call of the model is one step).
    public var steps: Int
    /// Prompt plus completion tokens, as the provider counted them.
    public var tokens: Int
    /// Milliseconds of wall-clock time while the run is being worked on.
    public var wallClockMilliseconds: Int

    /// A budget of these figures.
    public init(steps: Int, tokens: Int, wallClockMilliseconds: Int) {
        self.steps = steps
        self.tokens = tokens
        self.wallClockMilliseconds = wallClockMilliseconds
    }

    /// Each figure limited to `1...maximum`'s figure.
    public func clamped(maximum: AgentBudget) -> AgentBudget {
        AgentBudget(
            steps: min(max(1, steps), max(1, maximum.steps)), tokens: min(max(1, tokens), max(1, maximum.tokens)),
            wallClockMilliseconds: min(max(1, wallClockMilliseconds), max(1, maximum.wallClockMilliseconds)))
    }

    /// What is left after `usage` (never negative).
    public func remaining(after usage: AgentUsage) -> AgentBudget {
        AgentBudget(
            steps: max(0, steps.subtractingSaturated(usage.steps)), tokens: max(0, tokens.subtractingSaturated(usage.tokens)),
            wallClockMilliseconds: max(0, wallClockMilliseconds.subtractingSaturated(usage.wallClockMilliseconds)))
    }

    /// A child's budget: what it asked for (each figure optional), never more than
    /// `available` (the parent's remaining budget, or its share of it).
    public static func carve(requested: AgentBudget?, from available: AgentBudget) -> AgentBudget {
        guard let requested else { return available }
        return AgentBudget(
            steps: min(max(0, requested.steps), available.steps), tokens: min(max(0, requested.tokens), available.tokens),
            wallClockMilliseconds: min(max(0, requested.wallClockMilliseconds), available.wallClockMilliseconds))
    }

    /// `self` divided into `parts` equal shares (rounded down), for children started together.
    public func share(of parts: Int) -> AgentBudget {
        let parts = max(1, parts)
        return AgentBudget(steps: steps / parts, tokens: tokens / parts, wallClockMilliseconds: wallClockMilliseconds / parts)
    }

    /// The first budget `usage` exhausts, or nil. Steps are checked before a new model
    /// turn (all used: no further turn); tokens once more than the budget were spent; wall
    /// clock once it ran out.
    public func overrun(by usage: AgentUsage) -> AgentBudgetOverrun? {
        if usage.steps >= steps { return AgentBudgetOverrun(budget: .steps, limit: steps, used: usage.steps) }
        if usage.tokens > tokens { return AgentBudgetOverrun(budget: .tokens, limit: tokens, used: usage.tokens) }
        if usage.wallClockMilliseconds >= wallClockMilliseconds {
            return AgentBudgetOverrun(budget: .wallClock, limit: wallClockMilliseconds, used: usage.wallClockMilliseconds)
        }
        return nil
    }
}
