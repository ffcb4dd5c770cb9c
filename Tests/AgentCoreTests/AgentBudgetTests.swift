import Testing

@testable import AgentCore

@Suite struct AgentBudgetTests {
    let budget = AgentBudget(steps: 10, tokens: 1_000, wallClockMilliseconds: 60_000)

    @Test func nothingIsOverrunBeforeTheBudgetIsSpent() {
        #expect(budget.overrun(by: AgentUsage(steps: 9, tokens: 1_000, wallClockMilliseconds: 59_999)) == nil)
    }

    @Test func eachBudgetNamesItselfAndItsFigures() {
        #expect(budget.overrun(by: AgentUsage(steps: 10))?.reason == "steps budget exhausted: 10 of 10 steps used")
        #expect(budget.overrun(by: AgentUsage(steps: 1, tokens: 1_001))?.reason == "tokens budget exceeded: 1001 tokens used, the budget is 1000")
        #expect(budget.overrun(by: AgentUsage(wallClockMilliseconds: 60_000))?.budget == .wallClock)
    }

    @Test func aChildGetsWhatItAsksForButNeverMoreThanIsLeft() {
        let left = budget.remaining(after: AgentUsage(steps: 4, tokens: 900, wallClockMilliseconds: 1_000))
        #expect(left == AgentBudget(steps: 6, tokens: 100, wallClockMilliseconds: 59_000))
        let child = AgentBudget.carve(requested: AgentBudget(steps: 3, tokens: 5_000, wallClockMilliseconds: .max), from: left)
        #expect(child == AgentBudget(steps: 3, tokens: 100, wallClockMilliseconds: 59_000))
        #expect(AgentBudget.carve(requested: nil, from: left) == left)
        #expect(AgentBudget.carve(requested: AgentBudget(steps: -5, tokens: .min, wallClockMilliseconds: 0), from: left).steps == 0)
    }

    @Test func childrenStartedTogetherShareWhatIsLeft() {
        #expect(budget.share(of: 3) == AgentBudget(steps: 3, tokens: 333, wallClockMilliseconds: 20_000))
        #expect(budget.share(of: 0) == budget)
    }

    @Test func hugeFiguresSaturateInsteadOfTrapping() {
        let spent = AgentUsage(steps: .max, tokens: .max, wallClockMilliseconds: .max).charging(AgentUsage(steps: .max, tokens: 1))
        #expect(spent.steps == .max && spent.tokens == .max)
        #expect(AgentBudget(steps: .min, tokens: .min, wallClockMilliseconds: .min).remaining(after: AgentUsage(steps: .max, tokens: .max)).steps == 0)
        #expect(AgentBudget(steps: .max, tokens: .max, wallClockMilliseconds: .max).remaining(after: AgentUsage(steps: .min)).steps == .max)
        #expect(Int.max.addingSaturated(1) == .max)
        #expect(Int.min.subtractingSaturated(1) == .min)
    }

    @Test func clampingKeepsEveryFigureBetweenOneAndTheMaximum() {
        let clamped = AgentBudget(steps: 0, tokens: 10_000_000, wallClockMilliseconds: -4).clamped(maximum: budget)
        #expect(clamped == AgentBudget(steps: 1, tokens: 1_000, wallClockMilliseconds: 1))
    }
}
