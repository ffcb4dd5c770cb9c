import Foundation

/// A pending or decided SQL write of a run (`intelligence.agent_approvals`).
public struct AgentApprovalRecord: Sendable, Equatable {
    /// Where the approval stands.
    public enum Status: String, Sendable {
        /// Waits for a decision.
        case pending
        /// Approved, not yet run.
        case approved
        /// Refused.
        case rejected
        /// Running now (or the kernel stopped while it ran: its outcome is unknown).
        case executing
        /// Ran; `resultJSON` says how.
        case executed
    }

    /// The approval's id.
    public var id: UUID
    /// The run that asked.
    public var runID: UUID
    /// The tool call it belongs to.
    public var callID: String
    /// The SQL statement.
    public var statement: String
    /// Where it stands.
    public var status: Status
    /// Who decided.
    public var decidedBy: String?
    /// The outcome once executed (JSON text).
    public var resultJSON: String?

    /// An approval with these fields.
    public init(id: UUID, runID: UUID, callID: String, statement: String, status: Status, decidedBy: String?, resultJSON: String?) {
        self.id = id
        self.runID = runID
        self.callID = callID
        self.statement = statement
        self.status = status
        self.decidedBy = decidedBy
        self.resultJSON = resultJSON
    }
}
