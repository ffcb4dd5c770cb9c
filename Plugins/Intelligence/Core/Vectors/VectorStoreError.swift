/// Why a Knowledge Mesh storage operation was refused (each maps to one HTTP status).
public enum VectorStoreError: Error, CustomStringConvertible, Sendable, Equatable {
    /// No collection of that name (404).
    case collectionNotFound(String)
    /// A collection of that name exists already (409).
    case collectionExists(String)
    /// A limit would be exceeded (413/422 with the message).
    case limitExceeded(String)

    /// What happened, for the caller.
    public var description: String {
        switch self {
        case .collectionNotFound(let name): "no collection named \"\(name)\""
        case .collectionExists(let name): "a collection named \"\(name)\" exists already"
        case .limitExceeded(let message): message
        }
    }
}
