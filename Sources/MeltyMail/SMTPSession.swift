import Foundation
import MeltyPostgres

/// One SMTP conversation on one connection: connect, greeting, EHLO, STARTTLS, AUTH,
/// MAIL FROM, RCPT TO, DATA, QUIT. Used by one task and then dropped.
final class SMTPSession {
    private enum Channel {
        case plain(TCPConnection)
        case tls(TLSChannel)
    }

    private let settings: SMTPSettings
    private let loop: PostgresEventLoop
    /// The client's TLS context, made on first use.
    private let tlsContext: () throws -> TLSClientContext
    private let timeout: Duration
    private var channel: Channel?
    /// Received bytes not yet split into lines.
    private var input: [UInt8] = []
    /// Where the conversation is, for errors.
    private(set) var stage = "connect"
    /// Texts to hide from errors: the password and its base64 forms.
    private var secrets: [String] = []

    init(settings: SMTPSettings, loop: PostgresEventLoop, tlsContext: @escaping () throws -> TLSClientContext) {
        self.settings = settings
        self.loop = loop
        self.tlsContext = tlsContext
        timeout = .seconds(max(1, settings.timeoutSeconds))
        if let password = settings.password, !password.isEmpty {
            secrets = [
                password, Data(password.utf8).base64EncodedString(),
                Data(("\u{0}" + (settings.username ?? "") + "\u{0}" + password).utf8).base64EncodedString(),
            ]
        }
    }

    /// Sends `data` (the rendered `message`) to the message's recipients.
    func deliver(_ message: MailMessage, data: [UInt8]) async throws(SMTPError) {
        defer { close() }
        do {
            try await converse(message, data: data)
        } catch let error as SMTPError {
            throw error
        } catch {
            throw smtpError(for: error)
        }
    }

    // MARK: The conversation

    private func converse(_ message: MailMessage, data: [UInt8]) async throws {
        try validateSettings()
        stage = "connect"
        let connection = try await TCPConnection.connect(host: settings.bareHost, port: settings.port, timeout: timeout, loop: loop)
        channel = .plain(connection)
        if settings.security == .tls {
            stage = "TLS handshake"
            try await startTLS(on: connection)
        }

        stage = "greeting"
        let greeting = try await readReply(deadline: .now + timeout)
        guard greeting.code == 220 else { throw refusal(greeting, "the server does not take mail from this client now") }

        var extensions = try await hello()
        if settings.security == .starttls {
            stage = "STARTTLS"
            guard extensions["STARTTLS"] != nil else {
                throw failure(
                    "the server offers no STARTTLS; set security = \"none\" (unencrypted) or \"tls\" (implicit TLS, usually port 465)",
                    transient: false)
            }
            let reply = try await command("STARTTLS")
            guard reply.code == 220 else { throw refusal(reply, "the server refused to start TLS") }
            // RFC 3207: anything received before the handshake is discarded.
            input.removeAll()
            stage = "TLS handshake"
            try await startTLS(on: connection)
            extensions = try await hello()
        }

        if let username = settings.username {
            stage = "AUTH"
            try await authenticate(username: username, password: settings.password ?? "", extensions: extensions)
        }

        stage = "MAIL FROM"
        var parameters = ""
        if !message.from.isASCII || message.to.contains(where: { !$0.isASCII }) {
            guard extensions["SMTPUTF8"] != nil else {
                throw failure("an address is not ASCII and the server does not offer SMTPUTF8; use ASCII addresses", transient: false)
            }
            parameters = " SMTPUTF8"
        }
        let mailReply = try await command("MAIL FROM:<\(message.from.email)>\(parameters)")
        guard mailReply.code == 250 else {
            let hint =
                mailReply.code == 530
                ? "the server requires authentication; set username and password"
                : "check that the server lets this account send as <\(message.from.email)>"
            throw refusal(mailReply, hint)
        }

        stage = "RCPT TO"
        for recipient in message.to {
            let reply = try await command("RCPT TO:<\(recipient.email)>")
            guard reply.code == 250 || reply.code == 251 else {
                throw refusal(reply, "the server refused the recipient <\(recipient.email)>; nothing was sent")
            }
        }

        stage = "DATA"
        let dataReply = try await command("DATA")
        guard dataReply.code == 354 else { throw refusal(dataReply, "the server refused to take the message") }
        let deadline = ContinuousClock.now + timeout
        try await write(Self.dotStuffed(data), deadline: deadline)
        let accepted = try await readReply(deadline: .now + timeout)
        guard accepted.code == 250 else { throw refusal(accepted, "the server refused the message") }

        // The message is accepted: a failing QUIT changes nothing.
        stage = "QUIT"
        _ = try? await command("QUIT")
    }

    private func validateSettings() throws {
        let helo = settings.heloName
        guard !helo.isEmpty, helo.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            stage = "EHLO"
            throw failure("helo_name \(helo.debugDescription) must be a host name (printable ASCII, no spaces)", transient: false)
        }
        if let username = settings.username {
            guard !username.isEmpty, !username.utf8.contains(0), !(settings.password ?? "").utf8.contains(0) else {
                stage = "AUTH"
                throw failure("the username is empty, or the username or password contains NUL", transient: false)
            }
        }
    }

    /// EHLO, or HELO when the server refuses EHLO with 5xx; the offered extensions.
    private func hello() async throws -> [String: [String]] {
        stage = "EHLO"
        let reply = try await command("EHLO \(settings.heloName)")
        if reply.code == 250 { return reply.extensions }
        guard (500..<600).contains(reply.code) else { throw refusal(reply, "the server refused EHLO; check helo_name") }
        stage = "HELO"
        let fallback = try await command("HELO \(settings.heloName)")
        guard fallback.code == 250 else { throw refusal(fallback, "the server refused HELO; check helo_name") }
        return [:]
    }

    private func startTLS(on connection: TCPConnection) async throws {
        let tls = try TLSChannel(connection: connection, settings: settings, context: tlsContext())
        channel = .tls(tls)
        try await tls.handshake(deadline: .now + timeout)
    }

    /// AUTH PLAIN, or AUTH LOGIN when the server offers only LOGIN.
    private func authenticate(username: String, password: String, extensions: [String: [String]]) async throws {
        guard let mechanisms = extensions["AUTH"] else {
            var hint = "the server offers no AUTH on this connection"
            if settings.security == .none { hint += "; servers often offer AUTH only over TLS: set security = \"starttls\" or \"tls\"" }
            hint += ", or remove username to send without authentication"
            throw failure(hint, transient: false)
        }
        let badCredentials = "check username and password"
        if mechanisms.contains("PLAIN") {
            let token = Data(("\u{0}" + username + "\u{0}" + password).utf8).base64EncodedString()
            let reply = try await command("AUTH PLAIN \(token)")
            guard reply.code == 235 else { throw refusal(reply, authenticationHint(reply, badCredentials)) }
        } else if mechanisms.contains("LOGIN") {
            var reply = try await command("AUTH LOGIN")
            guard reply.code == 334 else { throw refusal(reply, authenticationHint(reply, badCredentials)) }
            reply = try await command(Data(username.utf8).base64EncodedString())
            guard reply.code == 334 else { throw refusal(reply, authenticationHint(reply, badCredentials)) }
            reply = try await command(Data(password.utf8).base64EncodedString())
            guard reply.code == 235 else { throw refusal(reply, authenticationHint(reply, badCredentials)) }
        } else {
            throw failure(
                "the server offers AUTH \(mechanisms.joined(separator: " ")) but neither PLAIN nor LOGIN, which this client speaks", transient: false)
        }
    }

    private func authenticationHint(_ reply: SMTPReply, _ otherwise: String) -> String {
        switch reply.code {
        case 530, 538: return "the server wants encryption before AUTH: set security = \"starttls\" or \"tls\""
        case 534: return "the server wants a stronger mechanism or an application password"
        default: return otherwise
        }
    }

    /// DATA's payload: CRLF line ends, a "." doubled at the start of a line (RFC 5321
    /// 4.5.2), ending with the lone "." line.
    static func dotStuffed(_ message: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(message.count + message.count / 64 + 5)
        var atLineStart = true
        var previous: UInt8 = 0
        for byte in message {
            if byte == 10 && previous != 13 { output.append(13) }
            if previous == 13 && byte != 10 {
                // A lone CR becomes CRLF.
                output.append(10)
                atLineStart = true
            }
            if atLineStart && byte == UInt8(ascii: ".") { output.append(UInt8(ascii: ".")) }
            output.append(byte)
            atLineStart = byte == 10
            previous = byte
        }
        if previous == 13 {
            output.append(10)
        } else if previous != 10 && !message.isEmpty {
            output += [13, 10]
        }
        output += Array(".\r\n".utf8)
        return output
    }

    // MARK: Reading and writing

    /// Sends `line` and CRLF, then reads the reply, within one timeout.
    private func command(_ line: String) async throws -> SMTPReply {
        let deadline = ContinuousClock.now + timeout
        try await write(Array((line + "\r\n").utf8), deadline: deadline)
        return try await readReply(deadline: deadline)
    }

    private func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) async throws {
        switch channel {
        case .plain(let connection): try await connection.write(bytes, deadline: deadline)
        case .tls(let tls): try await tls.write(bytes, deadline: deadline)
        case nil: throw ConnectionProblem.closed
        }
    }

    private func readReply(deadline: ContinuousClock.Instant) async throws -> SMTPReply {
        var parser = SMTPReply.Parser()
        while true {
            let line = try await readLine(deadline: deadline)
            do {
                if let reply = try parser.add(line) { return reply }
            } catch {
                throw ConnectionProblem.protocolViolation(error.reason)
            }
        }
    }

    /// One line without its CRLF (a bare LF is accepted), at most
    /// ``SMTPReply/maximumLineLength`` bytes.
    private func readLine(deadline: ContinuousClock.Instant) async throws -> [UInt8] {
        while true {
            if let newline = input.firstIndex(of: 10) {
                var end = newline
                if end > input.startIndex && input[end - 1] == 13 { end -= 1 }
                let line = Array(input[..<end])
                input.removeSubrange(...newline)
                guard line.count <= SMTPReply.maximumLineLength else {
                    throw ConnectionProblem.protocolViolation("a reply line is longer than \(SMTPReply.maximumLineLength) bytes")
                }
                return line
            }
            guard input.count <= SMTPReply.maximumLineLength + 1 else {
                throw ConnectionProblem.protocolViolation("a reply line is longer than \(SMTPReply.maximumLineLength) bytes")
            }
            let bytes: [UInt8]
            switch channel {
            case .plain(let connection): bytes = try await connection.read(maximum: 4096, deadline: deadline)
            case .tls(let tls): bytes = try await tls.read(deadline: deadline)
            case nil: throw ConnectionProblem.closed
            }
            guard !bytes.isEmpty else { throw ConnectionProblem.closed }
            input += bytes
        }
    }

    private func close() {
        switch channel {
        case .plain(let connection): connection.close()
        case .tls(let tls): tls.close()
        case nil: break
        }
        channel = nil
    }

    // MARK: Errors

    private var prefix: String { "SMTP server \(settings.endpoint), stage \(stage)" }

    /// The server answered with something other than what the stage needs.
    private func refusal(_ reply: SMTPReply, _ hint: String) -> SMTPError {
        var advice = hint
        if reply.isTransient { advice = "a temporary failure, try again later (\(hint))" }
        return SMTPError(
            stage: stage, replyCode: reply.code, isTransient: reply.isTransient,
            description: redacted("\(prefix): the server answered \(reply.code) \(reply.text); \(advice)"))
    }

    private func failure(_ detail: String, transient: Bool) -> SMTPError {
        SMTPError(stage: stage, isTransient: transient, description: redacted("\(prefix): \(detail)"))
    }

    private func smtpError(for error: any Error) -> SMTPError {
        let seconds = max(1, settings.timeoutSeconds)
        guard let problem = error as? ConnectionProblem else {
            if error is CancellationError { return failure("the send was cancelled", transient: true) }
            return failure("\(error)", transient: true)
        }
        switch problem {
        case .timeout:
            if stage == "connect" {
                return failure("no connection within \(seconds) s; check host, port and firewalls, or raise timeout_seconds", transient: true)
            }
            var hint = "check that this port speaks SMTP, or raise timeout_seconds"
            if stage == "greeting" && settings.security != .tls {
                hint = "if the port uses implicit TLS (usually 465), set security = \"tls\"; or raise timeout_seconds"
            }
            return failure("no answer within \(seconds) s; \(hint)", transient: true)
        case .closed:
            return failure("the server closed the connection", transient: true)
        case .system(let reason):
            if stage == "connect" {
                return failure("cannot connect: \(reason); check that the server runs and that host and port are right", transient: true)
            }
            return failure(reason, transient: true)
        case .tls(let reason, let transient):
            return failure(reason, transient: transient)
        case .protocolViolation(let reason):
            var hint = ""
            if stage == "greeting" && settings.security != .tls { hint = "; if the port uses implicit TLS (usually 465), set security = \"tls\"" }
            return failure("the server's answer is not SMTP: \(reason)\(hint)", transient: false)
        case .configuration(let reason):
            return failure(reason, transient: false)
        }
    }

    private func redacted(_ text: String) -> String {
        var text = text
        for secret in secrets where !secret.isEmpty { text = text.replacingOccurrences(of: secret, with: "[redacted]") }
        return text
    }
}
