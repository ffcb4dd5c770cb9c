/// A failure below the SMTP conversation (socket, TLS, reply framing); the session turns
/// it into an ``SMTPError`` naming the stage it happened in.
enum ConnectionProblem: Error, Sendable {
    /// No answer (or no connection) before the deadline.
    case timeout
    /// The server closed the connection.
    case closed
    /// A system call failed (connect, read, write); the text says which and why.
    case system(String)
    /// The TLS handshake or a TLS record failed; `transient` is false for certificate problems.
    case tls(String, transient: Bool)
    /// The server's bytes are not SMTP.
    case protocolViolation(String)
    /// The settings cannot work (bad port, unreadable CA file).
    case configuration(String)
}
