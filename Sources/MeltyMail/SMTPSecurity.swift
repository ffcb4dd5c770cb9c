/// How an SMTP connection is protected.
public enum SMTPSecurity: String, Sendable {
    /// Clear text for the whole session (AUTH, when configured, is sent in clear text too).
    case none
    /// Clear text first, then STARTTLS (RFC 3207) before anything else; refused when the
    /// server does not offer it. Usually port 587.
    case starttls
    /// Implicit TLS: TLS from the first byte (RFC 8314). Usually port 465.
    case tls
}
