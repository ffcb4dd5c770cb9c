/// Why a `table_read` call is refused (told to the model as an observation).
public struct AgentTableQueryRefusal: Error, Equatable, Sendable {
    /// What the model is told.
    public let message: String

    /// A refusal saying `message`.
    init(_ message: String) { self.message = message }
}
