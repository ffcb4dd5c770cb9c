import Foundation
import MeltyPostgres
import XCTest

@testable import MeltyMail

/// SMTPClient against a real aiosmtpd process (Tests/Support/smtp_server.py): plain,
/// STARTTLS + AUTH, implicit TLS, certificate and credential failures, refused
/// recipients, nothing listening and a server that never answers.
final class SMTPClientTests: XCTestCase {
    private var loop: PostgresEventLoop?
    private var folder: TemporaryFolder?
    private var servers: [SMTPTestServer] = []

    override func setUpWithError() throws {
        loop = PostgresEventLoop(name: "meltymail-tests")
        folder = try TemporaryFolder()
    }

    override func tearDown() {
        for server in servers { server.stop() }
        servers = []
        loop?.shutdown()
        loop = nil
        folder = nil
    }

    private func startServer(_ arguments: [String] = []) throws -> SMTPTestServer {
        guard let folder else { throw TestFailure("no folder") }
        let server = try SMTPTestServer(folder: folder.path, arguments: arguments)
        servers.append(server)
        return server
    }

    private func client(_ settings: SMTPSettings) throws -> SMTPClient {
        guard let loop else { throw TestFailure("no loop") }
        return SMTPClient(settings: settings, loop: loop)
    }

    private func message(to recipients: [String] = ["ann@example.com"], text: String = "Hello\n.hidden line\n.\nbye") throws -> MailMessage {
        MailMessage(
            from: try MailAddress("noreply@example.org", name: "MeltyBase"), to: try recipients.map { try MailAddress($0) },
            subject: "Confirm your sign-up ✓", text: text, html: "<p>Hello</p>")
    }

    /// Runs `send` and returns its SMTPError (failing when it succeeds).
    private func sendFailure(_ client: SMTPClient, _ message: MailMessage) async -> SMTPError? {
        do {
            try await client.send(message)
            XCTFail("the send should fail")
            return nil
        } catch {
            return error
        }
    }

    func testPlainSend() async throws {
        let server = try startServer()
        let smtp = try client(SMTPSettings(host: "127.0.0.1", port: server.port, security: .none))
        try await smtp.send(try message(to: ["ann@example.com", "bob@example.net"]))
        let (envelope, raw) = try server.message(1)
        XCTAssertEqual(envelope["mail_from"] as? String, "noreply@example.org")
        XCTAssertEqual(envelope["rcpt_tos"] as? [String], ["ann@example.com", "bob@example.net"])
        XCTAssertEqual(envelope["tls"] as? Bool, false)
        XCTAssertTrue(envelope["auth_user"] is NSNull)
        XCTAssertTrue(raw.contains("From: MeltyBase <noreply@example.org>\r\n"), raw)
        XCTAssertTrue(raw.contains("To: <ann@example.com>, <bob@example.net>\r\n"), raw)
        XCTAssertTrue(raw.contains("Subject: =?UTF-8?B?"), raw)
        XCTAssertTrue(raw.contains("multipart/alternative"))
        // The server undid the dot-stuffing: the lines are back as written.
        XCTAssertTrue(raw.contains("\r\nHello\r\n.hidden line\r\n.\r\nbye\r\n"), raw)
    }

    func testStartTLSWithAuthAndCAFile() async throws {
        guard let folder else { return }
        let (certificate, key) = try folder.makeCertificate()
        let server = try startServer(["--starttls", "--cert", certificate, "--key", key, "--auth", "mailer:s3cret-pw", "--require-auth"])
        let smtp = try client(
            SMTPSettings(host: "localhost", port: server.port, security: .starttls, username: "mailer", password: "s3cret-pw", caFile: certificate))
        try await smtp.send(try message())
        let (envelope, raw) = try server.message(1)
        XCTAssertEqual(envelope["tls"] as? Bool, true)
        XCTAssertEqual(envelope["auth_user"] as? String, "mailer")
        XCTAssertEqual(envelope["rcpt_tos"] as? [String], ["ann@example.com"])
        XCTAssertTrue(raw.contains(".hidden line"))
    }

    func testImplicitTLS() async throws {
        guard let folder else { return }
        let (certificate, key) = try folder.makeCertificate()
        let server = try startServer(["--implicit-tls", "--cert", certificate, "--key", key, "--auth", "mailer:pw"])
        // 127.0.0.1: the certificate's IP address is checked (no SNI for addresses).
        let smtp = try client(
            SMTPSettings(host: "127.0.0.1", port: server.port, security: .tls, username: "mailer", password: "pw", caFile: certificate))
        try await smtp.send(try message())
        let (envelope, _) = try server.message(1)
        XCTAssertEqual(envelope["tls"] as? Bool, true)
        XCTAssertEqual(envelope["auth_user"] as? String, "mailer")
    }

    func testSelfSignedCertificateIsRefusedWhenVerifying() async throws {
        guard let folder else { return }
        let (certificate, key) = try folder.makeCertificate()
        let server = try startServer(["--implicit-tls", "--cert", certificate, "--key", key])
        let smtp = try client(SMTPSettings(host: "localhost", port: server.port, security: .tls))
        let error = await sendFailure(smtp, try message())
        XCTAssertEqual(error?.stage, "TLS handshake")
        XCTAssertEqual(error?.isTransient, false)
        XCTAssertTrue(error?.description.contains("certificate") ?? false, error?.description ?? "")
        XCTAssertTrue(error?.description.contains("ca_file") ?? false, error?.description ?? "")
        XCTAssertEqual(server.storedCount, 0)

        // Without verification the same server takes the message.
        let unverified = try client(SMTPSettings(host: "localhost", port: server.port, security: .tls, verifyCertificate: false))
        try await unverified.send(try message())
        XCTAssertEqual(try server.message(1).envelope["tls"] as? Bool, true)
    }

    func testHostNameMismatchIsRefused() async throws {
        guard let folder else { return }
        // Trusted (it is the CA file) but made for another name: 127.0.0.1 is not in it.
        let (certificate, key) = try folder.makeCertificate(name: "other", subjectAltName: "DNS:mail.example.net")
        let server = try startServer(["--implicit-tls", "--cert", certificate, "--key", key])
        let smtp = try client(SMTPSettings(host: "127.0.0.1", port: server.port, security: .tls, caFile: certificate))
        let error = await sendFailure(smtp, try message())
        XCTAssertEqual(error?.stage, "TLS handshake")
        XCTAssertEqual(error?.isTransient, false)
        XCTAssertTrue(error?.description.contains("certificate does not name 127.0.0.1") ?? false, error?.description ?? "")
    }

    func testWrongPasswordIsRefused() async throws {
        guard let folder else { return }
        let (certificate, key) = try folder.makeCertificate()
        let server = try startServer(["--starttls", "--cert", certificate, "--key", key, "--auth", "mailer:right-pw"])
        let password = "wrong-Pa55word"
        let smtp = try client(
            SMTPSettings(host: "localhost", port: server.port, security: .starttls, username: "mailer", password: password, caFile: certificate))
        let error = await sendFailure(smtp, try message())
        XCTAssertEqual(error?.stage, "AUTH")
        XCTAssertEqual(error?.replyCode, 535)
        XCTAssertEqual(error?.isTransient, false)
        let description = error?.description ?? ""
        XCTAssertFalse(description.contains(password), description)
        XCTAssertFalse(description.contains(Data(password.utf8).base64EncodedString()), description)
        XCTAssertTrue(description.contains("username and password"), description)
        XCTAssertFalse(String(describing: error).contains(password))
        XCTAssertEqual(server.storedCount, 0)
    }

    func testAuthInClearTextWhenSecurityIsNone() async throws {
        let server = try startServer(["--auth", "mailer:pw", "--require-auth"])
        let smtp = try client(SMTPSettings(host: "127.0.0.1", port: server.port, security: .none, username: "mailer", password: "pw"))
        try await smtp.send(try message())
        XCTAssertEqual(try server.message(1).envelope["auth_user"] as? String, "mailer")

        // Without credentials the server answers MAIL with 530.
        let anonymous = try client(SMTPSettings(host: "127.0.0.1", port: server.port, security: .none))
        let error = await sendFailure(anonymous, try message())
        XCTAssertEqual(error?.stage, "MAIL FROM")
        XCTAssertEqual(error?.replyCode, 530)
        XCTAssertTrue(error?.description.contains("username") ?? false, error?.description ?? "")
    }

    func testStartTLSNotOfferedIsRefused() async throws {
        let server = try startServer()
        let smtp = try client(SMTPSettings(host: "127.0.0.1", port: server.port, security: .starttls))
        let error = await sendFailure(smtp, try message())
        XCTAssertEqual(error?.stage, "STARTTLS")
        XCTAssertTrue(error?.description.contains("offers no STARTTLS") ?? false, error?.description ?? "")
        XCTAssertEqual(server.storedCount, 0)
    }

    func testRefusedRecipient() async throws {
        let server = try startServer(["--fail-rcpt", "gone@example.com"])
        let smtp = try client(SMTPSettings(host: "127.0.0.1", port: server.port, security: .none))
        let error = await sendFailure(smtp, try message(to: ["ann@example.com", "gone@example.com"]))
        XCTAssertEqual(error?.stage, "RCPT TO")
        XCTAssertEqual(error?.replyCode, 550)
        XCTAssertEqual(error?.isTransient, false)
        XCTAssertTrue(error?.description.contains("gone@example.com") ?? false, error?.description ?? "")
        XCTAssertEqual(server.storedCount, 0, "a refused recipient stops the transaction")
    }

    func testConnectionRefused() async throws {
        // A port that was free a moment ago: bind, read the number, close.
        let port = try Self.listeningSocket(listen: false).port
        let smtp = try client(SMTPSettings(host: "127.0.0.1", port: port, security: .none, timeoutSeconds: 5))
        let error = await sendFailure(smtp, try message())
        XCTAssertEqual(error?.stage, "connect")
        XCTAssertEqual(error?.isTransient, true)
        XCTAssertNil(error?.replyCode)
        XCTAssertTrue(error?.description.contains("127.0.0.1:\(port)") ?? false, error?.description ?? "")
    }

    func testSilentServerTimesOut() async throws {
        // The kernel completes the TCP handshake for a listening socket; nobody accepts or answers.
        let listener = try Self.listeningSocket(listen: true)
        defer { close(listener.descriptor) }
        let smtp = try client(SMTPSettings(host: "127.0.0.1", port: listener.port, security: .none, timeoutSeconds: 1))
        let error = await sendFailure(smtp, try message())
        XCTAssertEqual(error?.stage, "greeting")
        XCTAssertEqual(error?.isTransient, true)
        XCTAssertTrue(error?.description.contains("no answer within 1 s") ?? false, error?.description ?? "")
    }

    func testUnrenderableMessageFailsBeforeConnecting() async throws {
        let smtp = try client(SMTPSettings(host: "127.0.0.1", port: 1, security: .none))
        let bad = MailMessage(from: try MailAddress("a@example.org"), to: [try MailAddress("b@example.com")], subject: "x\r\nBcc: y@z", text: "t")
        let error = await sendFailure(smtp, bad)
        XCTAssertEqual(error?.stage, "message")
    }

    /// A TCP socket on 127.0.0.1 with a kernel-chosen port; closed at once unless `listen`.
    static func listeningSocket(listen: Bool) throws -> (descriptor: Int32, port: Int) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else {
            close(descriptor)
            throw TestFailure("bind failed")
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        if listen {
            guard Glibc.listen(descriptor, 8) == 0 else {
                close(descriptor)
                throw TestFailure("listen failed")
            }
        } else {
            close(descriptor)
        }
        return (descriptor, port)
    }
}

/// Conversations aiosmtpd cannot produce: a server that refuses EHLO, hostile replies,
/// IPv6.
final class SMTPScriptedServerTests: XCTestCase {
    private var loop: PostgresEventLoop?

    override func setUp() {
        loop = PostgresEventLoop(name: "meltymail-scripted-tests")
    }

    override func tearDown() {
        loop?.shutdown()
        loop = nil
    }

    private func send(port: Int, security: SMTPSecurity = .none) async throws -> SMTPError? {
        guard let loop else { throw TestFailure("no loop") }
        let client = SMTPClient(settings: SMTPSettings(host: "127.0.0.1", port: port, security: security, timeoutSeconds: 5), loop: loop)
        let message = MailMessage(from: try MailAddress("a@example.org"), to: [try MailAddress("b@example.com")], subject: "s", text: "t")
        do {
            try await client.send(message)
            return nil
        } catch {
            return error
        }
    }

    func testHELOFallbackWhenEHLOIsRefused() async throws {
        let server = try ScriptedSMTPServer(
            greeting: Array("220 old.test\r\n".utf8),
            replies: ["502 5.5.2 EHLO not implemented\r\n", "250 old.test\r\n", "250 ok\r\n", "250 ok\r\n", "354 go ahead\r\n", "250 queued\r\n", "221 bye\r\n"])
        defer { server.stop() }
        let error = try await send(port: server.port)
        XCTAssertNil(error, error?.description ?? "")
        let received = server.received
        XCTAssertEqual(received.prefix(5), ["EHLO localhost", "HELO localhost", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.com>", "DATA"])
        XCTAssertEqual(received.last, "QUIT")
    }

    func testAuthLoginWhenOnlyLoginIsOffered() async throws {
        let server = try ScriptedSMTPServer(
            greeting: Array("220 x\r\n".utf8),
            replies: [
                "250-x\r\n250 AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n", "235 ok\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
                "250 queued\r\n", "221 bye\r\n",
            ])
        defer { server.stop() }
        guard let loop else { return }
        let settings = SMTPSettings(host: "127.0.0.1", port: server.port, security: .none, username: "me", password: "pw", timeoutSeconds: 5)
        let message = MailMessage(from: try MailAddress("a@example.org"), to: [try MailAddress("b@example.com")], subject: "s", text: "t")
        try await SMTPClient(settings: settings, loop: loop).send(message)
        XCTAssertEqual(server.received.prefix(4), ["EHLO localhost", "AUTH LOGIN", Data("me".utf8).base64EncodedString(), Data("pw".utf8).base64EncodedString()])
    }

    func testOversizedReplyLineIsRefused() async throws {
        let server = try ScriptedSMTPServer(greeting: Array(("220 " + String(repeating: "x", count: 100_000)).utf8), replies: [])
        defer { server.stop() }
        let error = try await send(port: server.port)
        XCTAssertEqual(error?.stage, "greeting")
        XCTAssertEqual(error?.isTransient, false)
        XCTAssertTrue(error?.description.contains("longer than 4096 bytes") ?? false, error?.description ?? "")
    }

    func testEndlessMultiLineReplyIsRefused() async throws {
        let server = try ScriptedSMTPServer(greeting: Array(String(repeating: "220-more\r\n", count: 500).utf8), replies: [])
        defer { server.stop() }
        let error = try await send(port: server.port)
        XCTAssertEqual(error?.stage, "greeting")
        XCTAssertTrue(error?.description.contains("more than 100 lines") ?? false, error?.description ?? "")
    }

    func testGarbageGreetingIsRefused() async throws {
        let server = try ScriptedSMTPServer(greeting: Array("HTTP/1.1 400 Bad Request\r\n".utf8), replies: [])
        defer { server.stop() }
        let error = try await send(port: server.port)
        XCTAssertEqual(error?.stage, "greeting")
        XCTAssertTrue(error?.description.contains("not SMTP") ?? false, error?.description ?? "")
    }

    func testIPv6Connect() async throws {
        let descriptor = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket failed") }
        defer { close(descriptor) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        // A machine without IPv6 loopback has nothing to test here.
        guard bound, listen(descriptor, 4) == 0 else { return }
        let port = Int(UInt16(bigEndian: address.sin6_port))
        guard let loop else { return }
        // A silent listener: reaching the greeting stage proves the IPv6 connection.
        let client = SMTPClient(settings: SMTPSettings(host: "[::1]", port: port, security: .none, timeoutSeconds: 1), loop: loop)
        let message = MailMessage(from: try MailAddress("a@example.org"), to: [try MailAddress("b@example.com")], subject: "s", text: "t")
        do {
            try await client.send(message)
            XCTFail("a silent server cannot take mail")
        } catch {
            XCTAssertEqual(error.stage, "greeting", error.description)
            XCTAssertTrue(error.description.contains("[::1]:\(port)"), error.description)
        }
    }
}
