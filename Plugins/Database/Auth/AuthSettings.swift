import Foundation
import MeltyPluginSDK

/// The email and anonymous sign-in settings of `/auth/v1`, from `[plugins.database.config]`
/// (and its `[plugins.database.config.smtp]` table). The same for every portal of the kernel;
/// what differs per portal (templates, the SMTP password in its Vault) lives with the portal.
struct AuthSettings: Sendable {
    /// `confirm_email`: a new address must be confirmed by a link or code before a password
    /// sign-in, and an email change takes effect when the new address confirms it.
    var confirmEmail = false
    /// `anonymous_users`: `POST /signup` without email and password creates an anonymous user.
    var anonymousUsers = false
    /// `site_url`: where users land after following a link when `redirect_to` is absent or not allowed.
    var siteURL = "http://localhost:3000"
    /// `redirect_urls`: further allowed `redirect_to` values, exact or a prefix ending in `*`.
    var redirectURLs: [String] = []
    /// `external_url`: the kernel's public base URL (`https://api.example.com`) that links in
    /// mail point at; never taken from a request's Host header.
    var externalURL: String?
    /// `otp_expiry_seconds`: how long a link or code stays valid.
    var otpExpirySeconds = 3600
    /// `email_rate_limit_per_hour`: mails a portal may send per hour (0: none at all).
    var emailRateLimitPerHour = 30
    /// `email_min_interval_seconds`: the least time between two mails to one address.
    var emailMinIntervalSeconds = 60
    /// `[plugins.database.config.smtp]`; nil when mail is not configured.
    var smtp: SMTPConfiguration?

    /// The keys this type reads from `[plugins.database.config]`.
    static let keys: Set<String> = [
        "confirm_email", "anonymous_users", "site_url", "redirect_urls", "external_url", "otp_expiry_seconds", "email_rate_limit_per_hour",
        "email_min_interval_seconds", "smtp",
    ]

    /// The mail server, from `[plugins.database.config.smtp]`.
    struct SMTPConfiguration: Sendable {
        /// `host` (required).
        var host: String
        /// `port`: default 587 for starttls, 465 for tls, 25 for none.
        var port: Int
        /// `security`: "none", "starttls" (default) or "tls".
        var security: String
        /// `sender`: the From address (required).
        var sender: String
        /// `sender_name`: the From display name.
        var senderName: String?
        /// `username`, or `username_secret` (a Vault secret's name) when the user name is secret too.
        var username: String?
        /// `username_secret`: the name of a Vault secret holding the user name.
        var usernameSecret: String?
        /// `password_secret`: the name of the portal Vault secret that holds the SMTP password.
        var passwordSecret: String?
        /// `ca_file`: a PEM file of certificate authorities to trust instead of the system's.
        var caFile: String?
        /// `verify_certificate` (default true).
        var verifyCertificate: Bool

        /// The keys of the table.
        static let keys: Set<String> = [
            "host", "port", "security", "sender", "sender_name", "username", "username_secret", "password_secret", "ca_file", "verify_certificate",
        ]
    }

    /// Defaults only (mail off, confirmation off).
    init() {}

    /// Reads and checks the keys; every error names the key and what to write instead.
    init(_ config: PluginConfig) throws {
        let plugin = "database"
        confirmEmail = try config.boolean("confirm_email", plugin: plugin) ?? false
        anonymousUsers = try config.boolean("anonymous_users", plugin: plugin) ?? false
        if let site = try config.string("site_url", plugin: plugin) {
            guard Self.isHTTPURL(site) else {
                throw PluginError.invalid("database: config key 'site_url' must be an absolute http(s) URL such as \"https://app.example.com\"")
            }
            siteURL = site
        }
        redirectURLs = try config.strings("redirect_urls", plugin: plugin) ?? []
        for entry in redirectURLs {
            let base = entry.hasSuffix("*") ? String(entry.dropLast()) : entry
            guard !base.contains("*"), base.utf8.count <= 2048, URL(string: base)?.scheme != nil, !base.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7F })
            else {
                throw PluginError.invalid(
                    "database: config key 'redirect_urls' holds \"\(entry)\"; write absolute URLs, optionally ending in * to allow every URL that starts so")
            }
        }
        if let external = try config.string("external_url", plugin: plugin) {
            guard Self.isHTTPURL(external), URL(string: external)?.query == nil else {
                throw PluginError.invalid("database: config key 'external_url' must be the kernel's public base URL, such as \"https://api.example.com\"")
            }
            externalURL = external.hasSuffix("/") ? String(external.dropLast()) : external
        }
        otpExpirySeconds = try config.integer("otp_expiry_seconds", in: 1...86_400, plugin: plugin) ?? otpExpirySeconds
        emailRateLimitPerHour = try config.integer("email_rate_limit_per_hour", in: 0...1_000_000, plugin: plugin) ?? emailRateLimitPerHour
        emailMinIntervalSeconds = try config.integer("email_min_interval_seconds", in: 0...86_400, plugin: plugin) ?? emailMinIntervalSeconds
        if let table = try config.table("smtp", plugin: plugin) {
            let inner = "database ([plugins.database.config.smtp])"
            guard let host = try table.string("host", plugin: inner), !host.isEmpty, host.utf8.count <= 255,
                !host.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F })
            else { throw PluginError.invalid("\(inner): key 'host' is required: the SMTP server's host name, such as \"smtp.example.com\"") }
            let security = try table.string("security", plugin: inner) ?? "starttls"
            guard ["none", "starttls", "tls"].contains(security) else {
                throw PluginError.invalid("\(inner): key 'security' must be \"none\", \"starttls\" or \"tls\"")
            }
            let defaultPort = security == "tls" ? 465 : security == "starttls" ? 587 : 25
            let port = try table.integer("port", in: 1...65_535, plugin: inner) ?? defaultPort
            guard let sender = try table.string("sender", plugin: inner), Self.isPlainAddress(sender) else {
                throw PluginError.invalid("\(inner): key 'sender' is required: the From address of auth mail, such as \"no-reply@example.com\"")
            }
            let senderName = try table.string("sender_name", plugin: inner)
            if let senderName, senderName.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) || senderName.count > 128 {
                throw PluginError.invalid("\(inner): key 'sender_name' must be one line of at most 128 characters")
            }
            let username = try table.string("username", plugin: inner)
            let usernameSecret = try table.string("username_secret", plugin: inner)
            let passwordSecret = try table.string("password_secret", plugin: inner)
            if username != nil && usernameSecret != nil {
                throw PluginError.invalid("\(inner): set 'username' or 'username_secret', not both")
            }
            if (username != nil || usernameSecret != nil) != (passwordSecret != nil) {
                throw PluginError.invalid(
                    "\(inner): 'password_secret' (the name of a Vault secret holding the SMTP password) and 'username' go together; set both or neither")
            }
            if table["password"] != nil {
                throw PluginError.invalid(
                    "\(inner): an SMTP password is never written in the config file; store it in each portal's Vault and name the secret in 'password_secret'")
            }
            let caFile = try table.string("ca_file", plugin: inner)
            if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
                throw PluginError.invalid("\(inner): key 'ca_file' names \"\(caFile)\", which is not a readable file")
            }
            let verify = try table.boolean("verify_certificate", plugin: inner) ?? true
            try table.refuseUnknownKeys(SMTPConfiguration.keys, plugin: inner)
            smtp = SMTPConfiguration(
                host: host, port: port, security: security, sender: sender, senderName: senderName, username: username, usernameSecret: usernameSecret,
                passwordSecret: passwordSecret, caFile: caFile, verifyCertificate: verify)
            guard externalURL != nil else {
                throw PluginError.invalid(
                    "database: [plugins.database.config.smtp] is set but 'external_url' is not; set external_url = \"https://<your public host>\" (links in mail point there, never at a request's Host header)"
                )
            }
        }
    }

    /// An absolute http or https URL without control characters or spaces.
    static func isHTTPURL(_ text: String) -> Bool {
        guard text.utf8.count <= 2048, !text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }),
            let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host?.isEmpty == false
        else { return false }
        return true
    }

    /// A bare address (`name@example.com`), nothing a header could be bent with.
    static func isPlainAddress(_ text: String) -> Bool {
        text.utf8.count <= 254 && text.range(of: "^[^@\\s<>\",;:()\\[\\]\\\\]+@[^@\\s<>\",;:()\\[\\]\\\\]+$", options: .regularExpression) != nil
    }

    /// `redirect_to` when it is allowed (the site URL's origin, or an entry of `redirect_urls`), else the site URL.
    func redirect(_ requested: String?) -> String {
        guard let requested, !requested.isEmpty, Self.isHTTPURL(requested) || requested.contains("://") && requested.utf8.count <= 2048,
            !requested.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F || $0 == "\\" })
        else { return siteURL }
        if let site = URL(string: siteURL), let wanted = URL(string: requested), Self.isHTTPURL(requested),
            site.scheme?.lowercased() == wanted.scheme?.lowercased(), site.host?.lowercased() == wanted.host?.lowercased(), site.port == wanted.port,
            wanted.user == nil, wanted.password == nil
        {
            return requested
        }
        for entry in redirectURLs {
            if entry.hasSuffix("*") {
                if requested.hasPrefix(entry.dropLast()) { return requested }
            } else if requested == entry {
                return requested
            }
        }
        return siteURL
    }
}
