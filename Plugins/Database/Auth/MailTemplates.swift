import Foundation

/// The mails of `/auth/v1`, per portal: `auth.email_templates (kind, subject, body_html)` in
/// the portal database overrides the built-in defaults below. Placeholders are Supabase's
/// (`{{ .ConfirmationURL }}`, `{{ .Token }}`, `{{ .TokenHash }}`, `{{ .SiteURL }}`,
/// `{{ .Email }}`, `{{ .NewEmail }}`, `{{ .RedirectTo }}`, `{{ .Data.<key> }}`); values are
/// HTML-escaped in the body, unknown placeholders render empty, and the subject is one line,
/// so a template can never add a header.
enum MailTemplates {
    /// Which mail (the `kind` column).
    enum Kind: String, Sendable, CaseIterable {
        /// Confirm a sign-up.
        case confirmation
        /// An invitation.
        case invite
        /// Sign in by link or code.
        case magicLink = "magic_link"
        /// Reset the password.
        case recovery
        /// Confirm a new address.
        case emailChange = "email_change"
    }

    /// What the placeholders stand for.
    struct Values: Sendable {
        /// `{{ .ConfirmationURL }}`: the verify link.
        var confirmationURL: String
        /// `{{ .Token }}`: the six-digit code.
        var token: String
        /// `{{ .TokenHash }}`.
        var tokenHash: String
        /// `{{ .SiteURL }}`.
        var siteURL: String
        /// `{{ .Email }}`.
        var email: String
        /// `{{ .NewEmail }}`.
        var newEmail: String
        /// `{{ .RedirectTo }}`.
        var redirectTo: String
        /// `{{ .Data.<key> }}`: the user's metadata (strings, numbers, booleans).
        var data: [String: String]
    }

    /// A rendered mail: subject, HTML body and its plain-text alternative.
    struct Rendered: Sendable {
        /// One line.
        var subject: String
        /// The HTML body.
        var html: String
        /// The plain-text body.
        var text: String
    }

    /// The table (part of the portal's schema script; idempotent). The portal owner edits it
    /// in the SQL console or a migration.
    static let schema = """
        CREATE TABLE IF NOT EXISTS auth.email_templates (
            kind text PRIMARY KEY CHECK (kind IN ('confirmation', 'invite', 'magic_link', 'recovery', 'email_change')),
            subject text,
            body_html text
        );
        DO $g$ BEGIN
          EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON auth.email_templates TO %I',
                         (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()));
        END $g$;
        """

    /// The built-in subject of `kind` (Supabase's).
    static func defaultSubject(_ kind: Kind) -> String {
        switch kind {
        case .confirmation: "Confirm Your Signup"
        case .invite: "You have been invited"
        case .magicLink: "Your Magic Link"
        case .recovery: "Reset Your Password"
        case .emailChange: "Confirm Email Change"
        }
    }

    /// The built-in HTML of `kind` (Supabase's, plus the code).
    static func defaultBody(_ kind: Kind) -> String {
        let code = "<p>Or enter this code: {{ .Token }}</p>"
        switch kind {
        case .confirmation:
            return "<h2>Confirm your signup</h2>\n<p>Follow this link to confirm your user:</p>\n<p><a href=\"{{ .ConfirmationURL }}\">Confirm your mail</a></p>\n" + code
        case .invite:
            return
                "<h2>You have been invited</h2>\n<p>You have been invited to create a user on {{ .SiteURL }}. Follow this link to accept the invite:</p>\n<p><a href=\"{{ .ConfirmationURL }}\">Accept the invite</a></p>\n"
                + code
        case .magicLink:
            return "<h2>Magic Link</h2>\n<p>Follow this link to login:</p>\n<p><a href=\"{{ .ConfirmationURL }}\">Log In</a></p>\n" + code
        case .recovery:
            return "<h2>Reset Password</h2>\n<p>Follow this link to reset the password for your user:</p>\n<p><a href=\"{{ .ConfirmationURL }}\">Reset Password</a></p>\n" + code
        case .emailChange:
            return
                "<h2>Confirm Change of Email</h2>\n<p>Follow this link to confirm the update of your email from {{ .Email }} to {{ .NewEmail }}:</p>\n<p><a href=\"{{ .ConfirmationURL }}\">Change Email</a></p>\n"
                + code
        }
    }

    /// The plain-text part, from the same values (whatever the HTML template says).
    static func text(_ kind: Kind, _ values: Values) -> String {
        let action: String
        switch kind {
        case .confirmation: action = "Follow this link to confirm your user"
        case .invite: action = "You have been invited to create a user on \(values.siteURL). Follow this link to accept the invite"
        case .magicLink: action = "Follow this link to log in"
        case .recovery: action = "Follow this link to reset the password for your user"
        case .emailChange: action = "Follow this link to confirm the update of your email from \(values.email) to \(values.newEmail)"
        }
        return "\(action):\n\n\(values.confirmationURL)\n\nOr enter this code: \(values.token)\n"
    }

    /// Renders `kind` from the portal's `subject`/`body` (nil: the default).
    static func render(_ kind: Kind, subject: String?, body: String?, values: Values) -> Rendered {
        let subjectTemplate = subject.flatMap { $0.isEmpty || $0.utf8.count > 1000 ? nil : $0 } ?? defaultSubject(kind)
        let bodyTemplate = body.flatMap { $0.isEmpty || $0.utf8.count > 200_000 ? nil : $0 } ?? defaultBody(kind)
        var renderedSubject = substitute(subjectTemplate, values: values, escape: false)
        // One line, no control characters: nothing a subject could add to the header block.
        renderedSubject = String(
            String.UnicodeScalarView(renderedSubject.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F || $0 == "\u{2028}" || $0 == "\u{2029}" ? " " : $0 }))
        if renderedSubject.count > 200 { renderedSubject = String(renderedSubject.prefix(200)) }
        if renderedSubject.trimmingCharacters(in: .whitespaces).isEmpty { renderedSubject = defaultSubject(kind) }
        return Rendered(subject: renderedSubject, html: substitute(bodyTemplate, values: values, escape: true), text: text(kind, values))
    }

    /// Replaces every `{{ ... }}`: known placeholders by their value, anything else by nothing.
    static func substitute(_ template: String, values: Values, escape: Bool) -> String {
        var output = ""
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            output += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                rest = rest[open.lowerBound...]
                break
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            let value = lookup(name, values)
            output += escape ? htmlEscape(value) : value
            rest = rest[close.upperBound...]
        }
        output += rest
        return output
    }

    private static func lookup(_ name: String, _ values: Values) -> String {
        switch name {
        case ".ConfirmationURL": return values.confirmationURL
        case ".Token": return values.token
        case ".TokenHash": return values.tokenHash
        case ".SiteURL": return values.siteURL
        case ".Email": return values.email
        case ".NewEmail": return values.newEmail
        case ".RedirectTo": return values.redirectTo
        default:
            if name.hasPrefix(".Data.") { return values.data[String(name.dropFirst(6))] ?? "" }
            return ""
        }
    }

    /// `&`, `<`, `>`, `"` and `'` as entities.
    static func htmlEscape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&#34;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
