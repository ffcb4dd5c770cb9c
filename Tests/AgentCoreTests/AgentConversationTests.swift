import Foundation
import ModelProvider
import Testing

@testable import AgentCore

@Suite struct AgentConversationTests {
    let run = UUID()

    func step(_ seq: Int, _ kind: AgentStepKind, _ json: String) -> AgentStepRecord {
        AgentStepRecord(runID: run, seq: seq, kind: kind, contentJSON: json, tokens: 0, createdAt: "")
    }

    @Test func aFreshRunIsTheSystemPromptAndTheGoal() {
        let conversation = AgentConversation(system: "be brief", goal: "count the notes", steps: [])
        #expect(conversation.messages == [.system("be brief"), .user("count the notes")])
        #expect(conversation.pendingCalls.isEmpty)
    }

    @Test func plansAndObservationsBecomeAssistantAndToolMessagesInCallOrder() {
        let steps = [
            step(1, .plan, #"{"content":"looking","tool_calls":[{"id":"a","name":"sql_read","arguments":"{}"},{"id":"b","name":"recall","arguments":"{}"}]}"#),
            step(2, .toolCall, #"{"id":"a","name":"sql_read","arguments":"{}"}"#),
            step(3, .toolCall, #"{"id":"b","name":"recall","arguments":"{}"}"#),
            step(4, .observation, #"{"call_id":"b","tool":"recall","text":"[]","ok":true}"#),
            step(5, .observation, #"{"call_id":"a","tool":"sql_read","text":"rows","ok":true}"#),
            step(6, .subAgent, #"{"child_id":"x"}"#),
        ]
        let conversation = AgentConversation(system: "s", goal: "g", steps: steps.reversed())
        #expect(conversation.pendingCalls.isEmpty)
        #expect(conversation.messages.count == 5)
        #expect(conversation.messages[2].toolCalls?.map(\.id) == ["a", "b"])
        #expect(conversation.messages[3] == .tool("rows", callID: "a"))
        #expect(conversation.messages[4] == .tool("[]", callID: "b"))
    }

    @Test func aCallWithoutItsObservationIsPendingAfterACrash() {
        let steps = [
            step(1, .plan, #"{"content":null,"tool_calls":[{"id":"a","name":"sql_read","arguments":"{}"},{"id":"b","name":"sql_write","arguments":"{}"}]}"#),
            step(2, .toolCall, #"{"id":"a","name":"sql_read","arguments":"{}"}"#),
            step(3, .observation, #"{"call_id":"a","tool":"sql_read","text":"rows","ok":true}"#),
            step(4, .toolCall, #"{"id":"b","name":"sql_write","arguments":"{}"}"#),
        ]
        let conversation = AgentConversation(system: "s", goal: "g", steps: steps)
        #expect(conversation.pendingCalls.map(\.id) == ["b"])
        #expect(conversation.announcedCalls == ["b"])
    }

    @Test func unreadableStepsAreSkippedNotFatal() {
        let steps = [step(1, .plan, "not json"), step(2, .observation, "[]"), step(3, .answer, #"{"text":"done"}"#)]
        let conversation = AgentConversation(system: "s", goal: "g", steps: steps)
        #expect(conversation.messages.last == ChatMessage(role: "assistant", content: "done"))
        #expect(conversation.pendingCalls.isEmpty)
    }
}
