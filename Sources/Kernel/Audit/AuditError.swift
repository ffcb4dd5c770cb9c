/// Why an audit operation was refused or could not complete, in words a user can act on.
public struct AuditError: Error, CustomStringConvertible, Equatable {
    /// What went wrong and, where possible, what to do about it.
    public var description: String

    /// An error with `description`.
    public init(_ description: String) {
        self.description = description
    }
}
