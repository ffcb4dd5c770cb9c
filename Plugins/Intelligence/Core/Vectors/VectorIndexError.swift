import CHNSW

/// A refused or failed vector index operation, with a message a caller can act on.
public struct VectorIndexError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, e.g. "query has 3 components, the index has dimension 4".
    public let message: String
    /// Which kind of failure this is.
    public let kind: Kind

    /// Kinds of failure, so callers can map them to responses (bad input is the caller's 4xx).
    public enum Kind: Sendable, Equatable {
        /// A parameter, vector or path is out of range.
        case invalidArgument
        /// The index is full and cannot grow further.
        case full
        /// A snapshot is truncated, corrupted or not a snapshot.
        case corrupt
        /// A snapshot holds an index of another dimension or metric.
        case mismatch
        /// Reading or writing a file failed (including a missing snapshot).
        case io
        /// Memory ran out or hnswlib reported something unexpected.
        case `internal`
    }

    /// An error of `kind` with `message`.
    public init(_ message: String, kind: Kind = .invalidArgument) {
        self.message = message
        self.kind = kind
    }

    /// The message.
    public var description: String { message }

    /// The error for a shim status and the NUL-terminated message it wrote.
    init(status: Int32, message: UnsafePointer<CChar>) {
        let text = String(cString: message)
        let kind: Kind =
            switch Int(status) {
            case Int(CHNSW_INVALID_ARGUMENT): .invalidArgument
            case Int(CHNSW_FULL): .full
            case Int(CHNSW_CORRUPT): .corrupt
            case Int(CHNSW_MISMATCH): .mismatch
            case Int(CHNSW_IO): .io
            default: .internal
            }
        self.init(text.isEmpty ? "vector index operation failed (status \(status))" : text, kind: kind)
    }
}
