import MeltyPostgres
import Synchronization

/// Sends mail over SMTP: one connection per ``send(_:)`` (connect, greeting, EHLO,
/// STARTTLS or implicit TLS, AUTH PLAIN or LOGIN, MAIL FROM, RCPT TO, DATA, QUIT), every
/// socket wait on the shared ``PostgresEventLoop`` and bounded by
/// ``SMTPSettings/timeoutSeconds``. AUTH runs over TLS; with ``SMTPSecurity/none`` it runs
/// in clear text (the password then crosses the network unencrypted: only for a relay on
/// the same host or a trusted network).
public final class SMTPClient: Sendable {
    /// Where and how mail is sent.
    public let settings: SMTPSettings
    private let loop: PostgresEventLoop
    /// The TLS context, made by the first mail that needs it and shared by the later ones.
    private let tlsContext = Mutex<TLSClientContext?>(nil)

    /// A client for `settings`; sockets are watched by `loop`.
    public init(settings: SMTPSettings, loop: PostgresEventLoop) {
        self.settings = settings
        self.loop = loop
    }

    /// Renders and delivers `message` to all its recipients, or to none: a refused
    /// recipient stops the transaction before DATA. Throws ``SMTPError`` with the stage
    /// (stage "message" when the message cannot be rendered), the server's reply code and
    /// whether a retry may help.
    public func send(_ message: MailMessage) async throws(SMTPError) {
        let data: [UInt8]
        do {
            data = try message.rendered()
        } catch {
            throw SMTPError(stage: "message", isTransient: false, description: "the message cannot be sent: \(error.description)")
        }
        let session = SMTPSession(settings: settings, loop: loop, tlsContext: sharedTLSContext)
        try await session.deliver(message, data: data)
    }

    /// The client's TLS context: made once; a failure (a bad ca_file) is reported to each
    /// mail that needs TLS, and retried by the next.
    private func sharedTLSContext() throws -> TLSClientContext {
        try tlsContext.withLock { cached in
            if let cached { return cached }
            let made = try TLSClientContext(settings: settings)
            cached = made
            return made
        }
    }
}
