/// A message or address that cannot be sent as given (bad address, header injection).
public struct MailError: Error, CustomStringConvertible, Sendable {
    /// What is wrong, in a sentence.
    public var description: String

    /// An error saying `description`.
    public init(_ description: String) {
        self.description = description
    }
}
