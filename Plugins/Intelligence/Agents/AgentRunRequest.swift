import AgentCore
import Foundation
import MeltyJSON

/// The body of `POST /agents/v1/runs`: `{goal, tools?, budget?: {steps, tokens, wall_clock_seconds}}`,
/// checked: every figure is range-checked and a budget above the configured maximum is refused.
struct AgentRunRequest: Sendable {
    /// What the run should do.
    let goal: String
    /// Its tools (the defaults when absent).
    let tools: [String]
    /// Its budget (the default's figures where absent).
    let budget: AgentBudget

    /// The longest goal accepted, in bytes.
    static let goalLimit = 16_000

    /// Parses and checks `body` for a caller who may (`privileged`: `service_role`, aal2
    /// admins) or may not use the free SQL tools.
    static func parse(_ body: [UInt8], settings: AgentSettings, privileged: Bool) -> Result<AgentRunRequest, AgentRefusal> {
        guard let object = JSONValue.object(json: body) else {
            return .failure(AgentRefusal(400, "invalid_body", "the body must be a JSON object {\"goal\": ..., \"tools\"?: [...], \"budget\"?: {...}}"))
        }
        for key in object.keys where !["goal", "tools", "budget"].contains(key) {
            return .failure(AgentRefusal(400, "unknown_field", "unknown field \"\(String(key.prefix(64)))\"", hint: "expected goal, tools, budget"))
        }
        guard let goal = object["goal"]?.stringValue, !goal.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            return .failure(AgentRefusal(400, "invalid_goal", "\"goal\" must be a non-empty string"))
        }
        guard goal.utf8.count <= goalLimit, !goal.utf8.contains(0) else {
            return .failure(AgentRefusal(400, "invalid_goal", "\"goal\" must be at most \(goalLimit) bytes and hold no NUL character"))
        }
        var tools = PortalToolbox.defaultTools(privileged: privileged)
        if let value = object["tools"] {
            guard let list = value.arrayValue, list.count <= 16 else { return .failure(AgentRefusal(400, "invalid_tools", "\"tools\" must be an array of tool names")) }
            var names: [String] = []
            for item in list {
                guard let name = item.stringValue, PortalToolbox.all[name] != nil else {
                    return .failure(
                        AgentRefusal(
                            400, "unknown_tool", "unknown tool \(item.stringValue.map { "\"\(String($0.prefix(64)))\"" } ?? item.kind)",
                            hint: "tools are \(PortalToolbox.all.keys.sorted().joined(separator: ", "))"))
                }
                if PortalToolbox.privilegedTools.contains(name) && !privileged {
                    return .failure(
                        AgentRefusal(
                            403, "tool_requires_admin", "the tool \"\(name)\" runs free SQL and is only for service_role or an aal2 admin",
                            hint: "use table_read to read tables under your row-level security"))
                }
                if !names.contains(name) { names.append(name) }
            }
            tools = names
        }
        var budget = settings.defaultBudget
        if let value = object["budget"] {
            guard let figures = value.objectValue else { return .failure(AgentRefusal(400, "invalid_budget", "\"budget\" must be an object")) }
            let maximum = settings.maximumBudget
            let limits: [(key: String, maximum: Int)] = [
                ("steps", maximum.steps), ("tokens", maximum.tokens), ("wall_clock_seconds", maximum.wallClockMilliseconds / 1000),
            ]
            for key in figures.keys where !limits.contains(where: { $0.key == key }) {
                return .failure(AgentRefusal(400, "invalid_budget", "unknown budget \"\(String(key.prefix(64)))\"", hint: "budgets are steps, tokens, wall_clock_seconds"))
            }
            for limit in limits {
                guard let figure = figures[limit.key] else { continue }
                guard let number = figure.intValue, (1...limit.maximum).contains(number) else {
                    return .failure(
                        AgentRefusal(
                            400, "invalid_budget", "budget \"\(limit.key)\" must be an integer from 1 to \(limit.maximum)",
                            hint: "the maximum is [plugins.intelligence.config] agents_max_\(limit.key)"))
                }
                switch limit.key {
                case "steps": budget.steps = number
                case "tokens": budget.tokens = number
                default: budget.wallClockMilliseconds = number * 1000
                }
            }
        }
        return .success(AgentRunRequest(goal: goal, tools: tools, budget: budget))
    }
}
