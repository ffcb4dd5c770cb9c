import AgentCore
import Foundation
import MeltyJSON

/// How runs, steps and approvals look in the agents' JSON answers and events.
enum AgentJSON {
    /// A budget or usage as `{steps, tokens, wall_clock_ms}`.
    static func budget(_ budget: AgentBudget) -> JSONValue {
        ["steps": JSONValue(budget.steps), "tokens": JSONValue(budget.tokens), "wall_clock_ms": JSONValue(budget.wallClockMilliseconds)]
    }

    /// A run (the caller's role and subject; never the claims).
    static func run(_ run: AgentRunRecord) -> JSONValue {
        [
            "id": .string(run.id.uuidString.lowercased()), "parent_id": JSONValue(run.parentID?.uuidString.lowercased()),
            "root_id": .string(run.rootID.uuidString.lowercased()), "goal": .string(run.goal), "tools": .array(run.tools.map(JSONValue.string)),
            "status": .string(run.status.rawValue), "reason": JSONValue(run.reason), "answer": JSONValue(run.answer), "budget": budget(run.budget),
            "used": ["steps": JSONValue(run.usage.steps), "tokens": JSONValue(run.usage.tokens), "wall_clock_ms": JSONValue(run.usage.wallClockMilliseconds)],
            "role": .string(run.caller.role), "subject": JSONValue(run.caller.subject), "created_at": .string(run.createdAt),
            "updated_at": .string(run.updatedAt), "finished_at": JSONValue(run.finishedAt),
        ]
    }

    /// A step with its content parsed.
    static func step(_ step: AgentStepRecord) -> JSONValue {
        [
            "run_id": .string(step.runID.uuidString.lowercased()), "seq": JSONValue(step.seq), "kind": .string(step.kind.rawValue),
            "content": JSONValue(json: Array(step.contentJSON.utf8)) ?? .null, "tokens": JSONValue(step.tokens), "created_at": .string(step.createdAt),
        ]
    }

    /// An approval.
    static func approval(_ approval: AgentApprovalRecord) -> JSONValue {
        [
            "id": .string(approval.id.uuidString.lowercased()), "run_id": .string(approval.runID.uuidString.lowercased()), "call_id": .string(approval.callID),
            "statement": .string(approval.statement), "status": .string(approval.status.rawValue), "decided_by": JSONValue(approval.decidedBy),
        ]
    }

    /// `value` as JSON text.
    static func text(_ value: JSONValue) -> String { (try? JSONValue.serialize(value)).map { String(decoding: $0, as: UTF8.self) } ?? "null" }
}
