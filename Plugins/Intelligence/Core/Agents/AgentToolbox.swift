import Foundation
import ModelProvider

/// The tools a run may call; the plugin implements them (SQL under the caller's role,
/// memories, sub-agents, ...).
public protocol AgentToolbox: Sendable {
    /// The function specs of `names` offered to the model (unknown names are left out).
    func specs(for names: [String]) -> [ToolSpec]

    /// Runs `call` for `context.run`. Throwing turns into an observation saying why (the
    /// model may try otherwise); cancellation ends the run's task.
    func call(_ call: ToolCall, context: AgentToolContext) async throws -> AgentToolOutcome
}
