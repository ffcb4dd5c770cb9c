/// A backup, verify or restore step failed: what happened and what to do.
public struct BackupError: Error, CustomStringConvertible, Sendable {
    /// What failed.
    public var message: String
    /// What to do about it.
    public var hint: String

    /// A failure saying `message`, with `hint` for what to do.
    public init(_ message: String, hint: String) {
        self.message = message
        self.hint = hint
    }

    /// `message (hint: ...)`.
    public var description: String { hint.isEmpty ? message : "\(message) (hint: \(hint))" }
}
