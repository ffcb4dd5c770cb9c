import Foundation
import ModelProvider
import Testing

@testable import AgentCore

@Suite struct AgentCallIDTests {
    let run = UUID()

    func step(_ seq: Int, _ kind: AgentStepKind, _ json: String) -> AgentStepRecord {
        AgentStepRecord(runID: run, seq: seq, kind: kind, contentJSON: json, tokens: 0, createdAt: "")
    }

    @Test func aFallbackIdOfAnEarlierPlanIsRenumbered() {
        // The codecs fall back to call_<index>: every turn's first call is call_0.
        let steps = [
            step(1, .plan, #"{"tool_calls":[{"id":"call_0","name":"sql_write","arguments":"{}"}]}"#),
            step(2, .observation, #"{"call_id":"call_0","tool":"sql_write","text":"done","ok":true}"#),
        ]
        let conversation = AgentConversation(system: "s", goal: "g", steps: steps)
        #expect(conversation.planCount == 1 && conversation.usedCallIDs == ["call_0"])
        let next = conversation.numbering([
            ToolCall(id: "call_0", name: "sql_write", arguments: "{}"), ToolCall(id: "fresh", name: "recall", arguments: "{}"),
            ToolCall(id: "", name: "recall", arguments: "{}"),
        ])
        #expect(next.map(\.id) == ["call_2_0", "fresh", "call_2_2"])
    }

    @Test func renumberedIdsAvoidEveryIdInUse() {
        let steps = [step(1, .plan, #"{"tool_calls":[{"id":"call_0","name":"a","arguments":"{}"},{"id":"call_2_0","name":"a","arguments":"{}"}]}"#)]
        let conversation = AgentConversation(system: "s", goal: "g", steps: steps)
        let next = conversation.numbering([ToolCall(id: "call_0", name: "a", arguments: "{}"), ToolCall(id: "call_2_0_", name: "a", arguments: "{}")])
        #expect(Set(next.map(\.id)).count == 2 && !next.contains { conversation.usedCallIDs.contains($0.id) })
    }

    @Test func idsRepeatedWithinOnePlanStayAndAreReported() {
        let conversation = AgentConversation(system: "s", goal: "g", steps: [])
        let calls = [ToolCall(id: "x", name: "a", arguments: "{}"), ToolCall(id: "x", name: "b", arguments: "{}"), ToolCall(id: "y", name: "a", arguments: "{}")]
        #expect(conversation.numbering(calls).map(\.id) == ["x", "x", "y"])
        #expect(AgentConversation.repeatedIDs(calls) == ["x"])
    }
}
