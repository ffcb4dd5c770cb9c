/// Why the store could not read what it wrote.
public enum AgentStoreError: Error, CustomStringConvertible {
    /// A row did not have the expected shape.
    case corrupt(String)

    /// The message.
    public var description: String {
        switch self {
        case .corrupt(let text): "the agents' tables hold something unexpected: \(text)"
        }
    }
}
