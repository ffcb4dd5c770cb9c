import Foundation
import MeltyJSON
import ModelProvider

/// The plan-act-observe loop of one run: ask the model, run the tools it calls, record every
/// step, and repeat until it answers, a budget runs out, it is cancelled or it must wait for
/// an approval. A run resumed after its kernel died continues from its stored steps.
public struct AgentLoop: Sendable {
    /// Where the run lives.
    public let store: AgentStore
    /// The model.
    public let model: any ChatModel
    /// The tools.
    public let toolbox: any AgentToolbox
    /// The system prompt.
    public let systemPrompt: String
    /// Seconds a lease lasts (renewed on every save).
    public let leaseSeconds: Int
    /// Called after every stored step (the plugin audits and counts it); throwing fails the run.
    public let onStep: @Sendable (AgentStepRecord) async throws -> Void
    /// The instance working the run (its `owner` column): the loop stops as soon as the run is
    /// leased to another instance (its lease lapsed and was taken over). Nil: no check.
    public let owner: String?

    /// A loop over these.
    public init(
        store: AgentStore, model: any ChatModel, toolbox: any AgentToolbox, systemPrompt: String, leaseSeconds: Int, owner: String? = nil,
        onStep: @escaping @Sendable (AgentStepRecord) async throws -> Void
    ) {
        self.owner = owner
        self.store = store
        self.model = model
        self.toolbox = toolbox
        self.systemPrompt = systemPrompt
        self.leaseSeconds = leaseSeconds
        self.onStep = onStep
    }

    /// The steps read back per page when the conversation is rebuilt (every step is read).
    static let stepPage = 5_000

    /// Works on run `id` until it ends or pauses; returns its record then. Cancellation of
    /// the task stops the work and leaves the stored status alone (a cancelled run was marked
    /// by whoever cancelled it; a closing kernel's runs resume later).
    @discardableResult
    public func run(_ id: UUID) async throws -> AgentRunRecord? {
        guard var run = try await store.run(id), !run.status.isTerminal, run.status != .waitingApproval else { return try await store.run(id) }
        guard try await store.start(id, owner: owner) else { return try await store.run(id) }
        run.status = .running
        let started = ContinuousClock.now
        let spentBefore = run.usage.wallClockMilliseconds
        var usage = run.usage
        func clock() -> Int {
            let elapsed = ContinuousClock.now - started
            let milliseconds = elapsed.components.seconds.multipliedReportingOverflow(by: 1000)
            let total = milliseconds.overflow ? Int.max : Int(clamping: milliseconds.partialValue).addingSaturated(Int(elapsed.components.attoseconds / 1_000_000_000_000_000))
            return spentBefore.addingSaturated(total)
        }
        do {
            while true {
                try Task.checkCancellation()
                guard let current = try await store.run(id), current.status == .running, owner == nil || current.owner == owner else {
                    return try await store.run(id)
                }
                usage.wallClockMilliseconds = clock()
                let steps = try await store.allSteps(of: id, page: Self.stepPage)
                let conversation = AgentConversation(system: systemPrompt, goal: run.goal, steps: steps)
                if !conversation.pendingCalls.isEmpty {
                    if let overrun = run.budget.overrun(by: AgentUsage(steps: 0, tokens: usage.tokens, wallClockMilliseconds: usage.wallClockMilliseconds)) {
                        return try await end(id, .budgetExceeded, reason: overrun.reason, usage: usage)
                    }
                    let remaining = run.budget.remaining(after: usage)
                    let result = try await act(conversation, record: run, remaining: remaining, deadline: remaining.wallClockMilliseconds)
                    usage = usage.charging(result.charged)
                    usage.wallClockMilliseconds = clock()
                    if result.timedOut {
                        let overrun = AgentBudgetOverrun(
                            budget: .wallClock, limit: run.budget.wallClockMilliseconds, used: max(usage.wallClockMilliseconds, run.budget.wallClockMilliseconds))
                        return try await end(id, .budgetExceeded, reason: overrun.reason, usage: usage)
                    }
                    if let waiting = result.waitingFor {
                        try await store.wait(id, reason: waiting, usage: usage, owner: owner)
                        return try await store.run(id)
                    }
                    guard try await store.save(id, usage: usage, leaseSeconds: leaseSeconds, owner: owner) else { return try await store.run(id) }
                    continue
                }
                if let overrun = run.budget.overrun(by: usage) {
                    return try await end(id, .budgetExceeded, reason: overrun.reason, usage: usage)
                }
                let remaining = run.budget.remaining(after: usage)
                let turn: ChatTurn
                do {
                    guard
                        let answered = try await Self.within(
                            milliseconds: remaining.wallClockMilliseconds,
                            { [model, toolbox, tools = run.tools] in
                                try await model.chat(conversation.messages, tools: toolbox.specs(for: tools))
                            })
                    else {
                        usage.wallClockMilliseconds = clock()
                        let overrun = AgentBudgetOverrun(
                            budget: .wallClock, limit: run.budget.wallClockMilliseconds, used: max(usage.wallClockMilliseconds, run.budget.wallClockMilliseconds))
                        return try await end(id, .budgetExceeded, reason: overrun.reason, usage: usage)
                    }
                    turn = answered
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    try Task.checkCancellation()
                    try await record(id, .error, ["message": .string("the model call failed: \(error)")])
                    return try await end(id, .failed, reason: "the model call failed: \(error)", usage: usage)
                }
                usage.steps = usage.steps.addingSaturated(1)
                usage.tokens = usage.tokens.addingSaturated(max(0, turn.totalTokens))
                usage.wallClockMilliseconds = clock()
                let calls = conversation.numbering(turn.message.toolCalls ?? [])
                if calls.isEmpty {
                    let text = turn.message.content ?? ""
                    try await record(id, .answer, ["text": .string(text), "finish_reason": JSONValue(turn.finishReason)], tokens: turn.totalTokens)
                    if usage.tokens > run.budget.tokens {
                        let overrun = AgentBudgetOverrun(budget: .tokens, limit: run.budget.tokens, used: usage.tokens)
                        return try await end(id, .budgetExceeded, reason: overrun.reason, usage: usage)
                    }
                    return try await end(id, .succeeded, reason: nil, answer: text, usage: usage)
                }
                let plan = AgentConversation.Plan(content: turn.message.content, toolCalls: calls)
                try await record(id, .plan, json: String(decoding: try JSONValue.serialize(plan), as: UTF8.self), tokens: turn.totalTokens)
                guard try await store.save(id, usage: usage, leaseSeconds: leaseSeconds, owner: owner) else { return try await store.run(id) }
            }
        } catch is CancellationError {
            return nil
        } catch let error where Task.isCancelled {
            _ = error
            return nil
        }
    }

    /// What one batch of tool calls came to.
    struct ActResult {
        var charged = AgentUsage()
        var waitingFor: String?
        var timedOut = false
    }

    /// Runs the pending calls of the last plan concurrently and records their observations.
    private func act(_ conversation: AgentConversation, record: AgentRunRecord, remaining: AgentBudget, deadline: Int) async throws -> ActResult {
        let pending = conversation.pendingCalls
        // Calls sharing an id cannot be told apart (their approval, sub-agent, observation):
        // none of them runs.
        let repeated = AgentConversation.repeatedIDs(pending)
        for id in repeated.sorted() {
            let name = pending.first { $0.id == id }?.name ?? ""
            let observation = AgentConversation.Observation(
                callID: id, tool: name, text: "refused: the tool-call id \"\(String(id.prefix(64)))\" appears more than once in one turn; none of these calls ran",
                ok: false)
            try await self.record(record.id, .observation, json: String(decoding: try JSONValue.serialize(observation), as: UTF8.self))
        }
        let calls = pending.filter { !repeated.contains($0.id) }
        for call in calls where !conversation.announcedCalls.contains(call.id) {
            try await self.record(record.id, .toolCall, ["id": .string(call.id), "name": .string(call.name), "arguments": .string(String(call.arguments.prefix(4000)))])
        }
        let spawns = calls.filter { $0.name == AgentLoop.spawnToolName }.count
        let share = spawns > 1 ? remaining.share(of: spawns) : remaining
        let toolbox = toolbox
        let outcome: ActResult? = try await Self.within(milliseconds: deadline) {
            try await withThrowingTaskGroup(of: (ToolCall, AgentToolOutcome).self) { group in
                for call in calls {
                    let context = AgentToolContext(run: record, available: call.name == AgentLoop.spawnToolName ? share : remaining)
                    group.addTask {
                        do {
                            return (call, try await toolbox.call(call, context: context))
                        } catch is CancellationError {
                            throw CancellationError()
                        } catch {
                            return (call, .observation("the tool failed: \(error)", ok: false, charged: AgentUsage()))
                        }
                    }
                }
                var result = ActResult()
                for try await (call, outcome) in group {
                    switch outcome {
                    case .observation(let text, let ok, let charged):
                        result.charged = result.charged.charging(charged)
                        let observation = AgentConversation.Observation(callID: call.id, tool: call.name, text: text, ok: ok)
                        try await self.record(record.id, .observation, json: String(decoding: try JSONValue.serialize(observation), as: UTF8.self))
                    case .awaitingApproval(let reason):
                        result.waitingFor = reason
                    }
                }
                return result
            }
        }
        return outcome ?? ActResult(timedOut: true)
    }

    /// The name of the tool that starts a sub-agent (its calls share the remaining budget).
    public static let spawnToolName = "spawn_agent"

    private func record(_ id: UUID, _ kind: AgentStepKind, _ content: [String: JSONValue], tokens: Int = 0) async throws {
        try await record(id, kind, json: String(decoding: try JSONValue.serialize(content), as: UTF8.self), tokens: tokens)
    }

    private func record(_ id: UUID, _ kind: AgentStepKind, json: String, tokens: Int = 0) async throws {
        let step = try await store.append(id, kind: kind, contentJSON: json, tokens: tokens)
        try await onStep(step)
    }

    private func end(_ id: UUID, _ status: AgentRunStatus, reason: String?, answer: String? = nil, usage: AgentUsage) async throws -> AgentRunRecord? {
        if status == .budgetExceeded, let reason { try await record(id, .error, ["message": .string(reason), "status": .string(status.rawValue)]) }
        try await store.finish(id, status: status, reason: reason, answer: answer, usage: usage, owner: owner)
        return try await store.run(id)
    }

    /// `body`'s value, or nil when it took longer than `milliseconds`. Returns as soon as the
    /// time is up or the calling task is cancelled, without waiting for `body` (which is
    /// cancelled and finishes on its own: a model call through the host's egress cannot be
    /// interrupted, its late answer is dropped).
    static func within<T: Sendable>(milliseconds: Int, _ body: @escaping @Sendable () async throws -> T) async throws -> T? {
        guard milliseconds > 0 else { return nil }
        let race = AgentRace<T?>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T?, any Error>) in
                let work = Task {
                    do {
                        race.finish(.success(try await body()))
                    } catch {
                        race.finish(.failure(error))
                    }
                }
                let timer = Task {
                    try? await Task.sleep(for: .milliseconds(milliseconds))
                    race.finish(.success(nil))
                }
                race.start(continuation, tasks: [work, timer])
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }
}
