import Foundation
import MeltyJSON
import MeltyMail
import MeltyPluginSDK
import MeltyPostgres
import Synchronization

/// Sends one portal's auth mail through the configured SMTP server (the only type that
/// touches MeltyMail). The SMTP user name and password come from the portal's Vault
/// (`vault.v1` `get`, as this plugin), are kept in memory for a minute at most, and are
/// never logged nor written anywhere.
final class AuthMailer: Sendable {
    /// The server and the names of the Vault secrets.
    let configuration: AuthSettings.SMTPConfiguration
    /// The plugin's event loop (drives the SMTP connection).
    let loop: PostgresEventLoop
    /// For the Vault, logs and audit.
    let host: PluginHostServices
    /// Whose mail and whose Vault.
    let portal: Portal
    private let cache = Mutex<(username: String?, password: String?, until: Date)?>(nil)
    /// Seconds the Vault's answer is reused.
    static let credentialLifetime: TimeInterval = 60

    /// A mailer for `portal`.
    init(configuration: AuthSettings.SMTPConfiguration, loop: PostgresEventLoop, host: PluginHostServices, portal: Portal) {
        self.configuration = configuration
        self.loop = loop
        self.host = host
        self.portal = portal
    }

    /// Sends `mail` to `recipient`; throws an ``AuthFailure`` a user can act on (500 when the
    /// server or the Vault refuses, 503 for a transient SMTP failure).
    func send(to recipient: String, _ mail: MailTemplates.Rendered, purpose: String) async throws {
        let from: MailAddress
        let to: MailAddress
        do {
            from = try MailAddress(configuration.sender, name: configuration.senderName)
            to = try MailAddress(recipient)
        } catch {
            throw AuthFailure(status: 400, code: "email_address_invalid", message: "Unable to send email to this address: \(error)")
        }
        let credentials = try await credentials()
        let settings = SMTPSettings(
            host: configuration.host, port: configuration.port, security: SMTPSecurity(rawValue: configuration.security) ?? .starttls,
            username: credentials.username, password: credentials.password, caFile: configuration.caFile,
            verifyCertificate: configuration.verifyCertificate, heloName: Self.heloName(configuration.sender), timeoutSeconds: 30)
        let message = MailMessage(from: from, to: [to], subject: mail.subject, text: mail.text, html: mail.html)
        do {
            try await SMTPClient(settings: settings, loop: loop).send(message)
        } catch {
            // Typed: an SMTPError (stage "message" when the rendered template is refused).
            host.log(.warning, "auth: sending the \(purpose) email failed at \(error.stage): \(error.description)", portal: portal)
            if error.replyCode == 535 || error.stage.lowercased().contains("auth") { cache.withLock { $0 = nil } }
            throw AuthFailure(
                status: error.isTransient ? 503 : 500, code: "unexpected_failure",
                message: "Error sending \(purpose) email: the mail server refused (\(error.stage)); the server log says why",
                retryAfterSeconds: error.isTransient ? 30 : nil)
        }
    }

    /// The domain of the sender address, as the HELO name.
    static func heloName(_ sender: String) -> String {
        let domain = sender.split(separator: "@").last.map(String.init) ?? "localhost"
        return domain.isEmpty ? "localhost" : domain
    }

    /// The user name and password, from the cache or the portal's Vault.
    private func credentials() async throws -> (username: String?, password: String?) {
        guard let passwordSecret = configuration.passwordSecret else { return (nil, nil) }
        if let cached = cache.withLock({ $0 }), cached.until > Date() { return (cached.username, cached.password) }
        let password = try await vaultSecret(passwordSecret)
        let username = try await configuration.usernameSecret.asyncMap { try await vaultSecret($0) } ?? configuration.username
        cache.withLock { $0 = (username, password, Date().addingTimeInterval(Self.credentialLifetime)) }
        return (username, password)
    }

    private func vaultSecret(_ name: String) async throws -> String {
        let caller = PluginCredential.plugin("database", grant: "[plugins.database.config.smtp] names this secret for sending auth mail")
        let reply: [UInt8]
        do {
            reply = try await host.callService("vault", major: 1, method: "get", arguments: ["name": .string(name)], caller: caller, portal: portal)
        } catch {
            host.log(.warning, "auth: the SMTP secret \"\(name)\" could not be read from the portal's Vault: \(error)", portal: portal)
            throw AuthFailure(
                status: 500, code: "unexpected_failure",
                message:
                    "Error sending email: the SMTP secret \"\(name)\" could not be read from portal \"\(portal.name)\"'s Vault; enable the vault plugin for the portal and create the secret (POST /p/\(portal.name)/vault/v1/secrets)"
            )
        }
        guard let value = JSONValue.object(json: reply)?["value"]?.stringValue else {
            throw AuthFailure(status: 500, code: "unexpected_failure", message: "Error sending email: the Vault's answer for secret \"\(name)\" has no value")
        }
        return value
    }
}

extension Optional {
    /// `map` with an async transform.
    fileprivate func asyncMap<Mapped>(_ transform: (Wrapped) async throws -> Mapped) async rethrows -> Mapped? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
