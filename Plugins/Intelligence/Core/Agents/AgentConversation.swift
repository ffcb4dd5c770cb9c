import Foundation
import MeltyJSON
import ModelProvider

/// The conversation of a run rebuilt from its stored steps: what a resumed run sends the
/// model, and which tool calls still wait for their observation.
public struct AgentConversation: Sendable, Equatable {
    /// The messages: system, the goal, then each plan and its observations.
    public var messages: [ChatMessage]
    /// Tool calls of the last plan that have no observation yet (to run, or re-run).
    public var pendingCalls: [ToolCall]
    /// Pending calls whose `tool_call` step is already stored.
    public var announcedCalls: Set<String>
    /// The ids of every tool call of every plan so far (a new plan's ids must not reuse
    /// them: approvals and sub-agents are found by run and call id).
    public var usedCallIDs: Set<String>
    /// How many plans the run made so far.
    public var planCount: Int

    /// The content of a `plan` step.
    public struct Plan: Codable, Sendable, Equatable {
        /// The assistant's text.
        public var content: String?
        /// Its tool calls.
        public var toolCalls: [ToolCall]

        /// A plan of these.
        public init(content: String?, toolCalls: [ToolCall]) {
            self.content = content
            self.toolCalls = toolCalls
        }

        enum CodingKeys: String, CodingKey {
            case content
            case toolCalls = "tool_calls"
        }
    }

    /// The content of an `observation` step.
    public struct Observation: Codable, Sendable, Equatable {
        /// The call it answers.
        public var callID: String
        /// The tool's name.
        public var tool: String
        /// What the model is told.
        public var text: String
        /// False when the tool failed (the text says why).
        public var ok: Bool

        /// An observation of these.
        public init(callID: String, tool: String, text: String, ok: Bool) {
            self.callID = callID
            self.tool = tool
            self.text = text
            self.ok = ok
        }

        enum CodingKeys: String, CodingKey {
            case callID = "call_id"
            case tool, text, ok
        }
    }

    /// The tool calls of a new plan with ids unique in the run: an empty id, or one an earlier
    /// plan used (a provider's fallback `call_0` comes back every turn), becomes
    /// `call_<plan>_<index>`. Ids repeated within the plan stay as they are: those calls are
    /// refused, not run.
    public func numbering(_ calls: [ToolCall]) -> [ToolCall] {
        var counts: [String: Int] = [:]
        for call in calls { counts[call.id, default: 0] += 1 }
        var taken = usedCallIDs.union(calls.map(\.id))
        let plan = planCount.addingSaturated(1)
        return calls.enumerated().map { index, call in
            guard call.id.isEmpty || (usedCallIDs.contains(call.id) && counts[call.id, default: 0] == 1) else { return call }
            var id = "call_\(plan)_\(index)"
            while taken.contains(id) { id += "_" }
            taken.insert(id)
            return ToolCall(id: id, name: call.name, arguments: call.arguments)
        }
    }

    /// The ids that occur more than once among `calls` (such calls are refused).
    public static func repeatedIDs(_ calls: [ToolCall]) -> Set<String> {
        var counts: [String: Int] = [:]
        for call in calls { counts[call.id, default: 0] += 1 }
        return Set(counts.filter { $0.value > 1 }.keys)
    }

    /// The conversation of a run with `system` prompt and `goal` after `steps` (in `seq` order).
    public init(system: String, goal: String, steps: [AgentStepRecord]) {
        var messages: [ChatMessage] = [.system(system), .user(goal)]
        var openPlan: [ToolCall] = []
        var answered: [String: String] = [:]
        var announced: Set<String> = []
        var used: Set<String> = []
        var plans = 0
        func closePlan() {
            for call in openPlan { messages.append(.tool(answered[call.id] ?? "(no result was recorded)", callID: call.id)) }
            openPlan = []
            answered = [:]
            announced = []
        }
        let decoder = JSONDecoder()
        for step in steps.sorted(by: { $0.seq < $1.seq }) {
            switch step.kind {
            case .plan:
                closePlan()
                plans += 1
                guard let plan = try? decoder.decode(Plan.self, from: Data(step.contentJSON.utf8)) else { continue }
                used.formUnion(plan.toolCalls.map(\.id))
                messages.append(ChatMessage(role: "assistant", content: plan.content, toolCalls: plan.toolCalls.isEmpty ? nil : plan.toolCalls))
                openPlan = plan.toolCalls
            case .observation:
                guard let observation = try? decoder.decode(Observation.self, from: Data(step.contentJSON.utf8)) else { continue }
                answered[observation.callID] = observation.text
            case .toolCall:
                if let id = JSONValue.object(json: Array(step.contentJSON.utf8))?["id"]?.stringValue { announced.insert(id) }
            case .answer:
                closePlan()
                let text = JSONValue.object(json: Array(step.contentJSON.utf8))?["text"]?.stringValue
                messages.append(ChatMessage(role: "assistant", content: text))
            case .subAgent, .approval, .error:
                continue
            }
        }
        pendingCalls = openPlan.filter { answered[$0.id] == nil }
        announcedCalls = announced.intersection(pendingCalls.map(\.id))
        usedCallIDs = used
        planCount = plans
        // Answered calls of the open plan join the conversation; pending ones are answered
        // once they ran (``messages`` is read only when nothing is pending).
        for call in openPlan { if let text = answered[call.id] { messages.append(.tool(text, callID: call.id)) } }
        self.messages = messages
    }
}
