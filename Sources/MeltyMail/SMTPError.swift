/// Why ``SMTPClient/send(_:)`` failed: the stage, the server's reply code when it answered,
/// and whether trying again later may help.
public struct SMTPError: Error, CustomStringConvertible, Sendable {
    /// Where the conversation stopped: "message", "connect", "TLS handshake", "greeting",
    /// "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL FROM", "RCPT TO", "DATA" or "QUIT".
    public var stage: String
    /// The server's reply code, when the failure is a reply.
    public var replyCode: Int?
    /// True for 4xx replies, timeouts and connection failures: a later attempt may succeed.
    public var isTransient: Bool
    /// What happened and what to check: the server, the stage, the server's reply text and
    /// a hint. Never contains the password.
    public var description: String

    /// An error with the given fields.
    public init(stage: String, replyCode: Int? = nil, isTransient: Bool, description: String) {
        self.stage = stage
        self.replyCode = replyCode
        self.isTransient = isTransient
        self.description = description
    }
}
