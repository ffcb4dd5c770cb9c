import Foundation

/// An email: envelope sender and recipients (from `from` and `to`), subject, a text body
/// and an optional HTML alternative. ``rendered(date:messageID:)`` makes the RFC 5322 /
/// MIME bytes that ``SMTPClient`` sends.
public struct MailMessage: Sendable {
    /// The sender: the From header and the envelope's MAIL FROM.
    public var from: MailAddress
    /// The recipients: the To header and one RCPT TO each.
    public var to: [MailAddress]
    /// The subject (any Unicode; encoded-words when not plain ASCII).
    public var subject: String
    /// The plain-text body.
    public var text: String
    /// An HTML body; with it the message is `multipart/alternative` (text, then HTML).
    public var html: String?
    /// Extra headers (for example `Reply-To`, `Auto-Submitted`). CR, LF and NUL are refused
    /// in names and values; the headers the renderer writes itself cannot be given here.
    public var headers: [(name: String, value: String)]

    /// A message; nothing is validated until it is rendered.
    public init(
        from: MailAddress, to: [MailAddress], subject: String, text: String, html: String? = nil,
        headers: [(name: String, value: String)] = []
    ) {
        self.from = from
        self.to = to
        self.subject = subject
        self.text = text
        self.html = html
        self.headers = headers
    }

    /// Header names the renderer writes; ``headers`` cannot repeat them.
    static let reservedHeaders: Set<String> = [
        "date", "from", "to", "cc", "bcc", "subject", "message-id", "mime-version", "content-type", "content-transfer-encoding",
    ]

    /// The message as sent in DATA (before dot-stuffing): headers (Date, From, To, Subject,
    /// Message-ID, MIME-Version, the extra headers, the content headers), a blank line and
    /// the UTF-8 bodies in quoted-printable; CRLF line ends, no line above 998 bytes.
    /// `messageID` (with or without angle brackets) replaces the random
    /// `<random@domain-of-from>`. Throws for header injection (CR, LF, NUL in a header),
    /// a message without recipients or an unfoldable header.
    public func rendered(date: Date = Date(), messageID: String? = nil) throws(MailError) -> [UInt8] {
        guard !to.isEmpty else { throw MailError("the message has no recipients") }
        guard !Self.hasLineBreakOrNul(subject) else { throw MailError("the subject contains CR, LF or NUL (header injection refused)") }
        var lines: [String] = []
        lines.append("Date: " + Self.rfc5322Date(date))
        lines.append(try MIMEEncoding.headerLine("From", MIMEEncoding.addressListTokens([from])))
        lines.append(try MIMEEncoding.headerLine("To", MIMEEncoding.addressListTokens(to)))
        lines.append(try MIMEEncoding.headerLine("Subject", MIMEEncoding.unstructuredTokens(subject)))
        lines.append("Message-ID: " + (try Self.messageIDValue(messageID, domain: from.domain)))
        lines.append("MIME-Version: 1.0")
        for header in headers {
            try Self.validateHeaderName(header.name)
            guard !Self.hasLineBreakOrNul(header.value) else {
                throw MailError("the value of header \(header.name) contains CR, LF or NUL (header injection refused)")
            }
            guard !Self.reservedHeaders.contains(header.name.lowercased()) else {
                throw MailError("the \(header.name) header is written by MailMessage itself and cannot be given in headers")
            }
            lines.append(try MIMEEncoding.headerLine(header.name, MIMEEncoding.unstructuredTokens(header.value)))
        }

        var output = Array((lines.joined(separator: "\r\n") + "\r\n").utf8)
        if let html {
            let boundary = "=_MeltyMail_" + Self.randomHex(bytes: 12)
            output += Array("Content-Type: multipart/alternative; boundary=\"\(boundary)\"\r\n\r\n".utf8)
            output += Array("This is a multi-part message in MIME format.\r\n".utf8)
            for (type, body) in [("text/plain", text), ("text/html", html)] {
                output += Array("\r\n--\(boundary)\r\n".utf8)
                output += Self.textPart(type: type, body: body)
            }
            output += Array("\r\n--\(boundary)--\r\n".utf8)
        } else {
            output += Self.textPart(type: "text/plain", body: text)
            output += [13, 10]
        }
        return output
    }

    /// Content headers, a blank line and the quoted-printable body (no final CRLF).
    private static func textPart(type: String, body: String) -> [UInt8] {
        Array("Content-Type: \(type); charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".utf8)
            + MIMEEncoding.quotedPrintable(body)
    }

    static func hasLineBreakOrNul(_ value: String) -> Bool {
        value.utf8.contains { $0 == 13 || $0 == 10 || $0 == 0 }
    }

    /// A header name is printable ASCII without colon or space (RFC 5322 field-name).
    static func validateHeaderName(_ name: String) throws(MailError) {
        guard !name.isEmpty, name.utf8.allSatisfy({ $0 >= 33 && $0 <= 126 && $0 != UInt8(ascii: ":") }) else {
            throw MailError("the header name \(name.debugDescription) is not printable ASCII without colon (header injection refused)")
        }
    }

    static func messageIDValue(_ given: String?, domain: String) throws(MailError) -> String {
        guard let given else { return "<\(randomHex(bytes: 16))@\(domain)>" }
        var bare = given
        if bare.hasPrefix("<") && bare.hasSuffix(">") && bare.count >= 2 { bare = String(bare.dropFirst().dropLast()) }
        guard !bare.isEmpty, bare.utf8.allSatisfy({ $0 >= 33 && $0 <= 126 && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">") }) else {
            throw MailError("the Message-ID \(given.debugDescription) must be printable ASCII without spaces, CR or LF")
        }
        return "<\(bare)>"
    }

    static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// `Sun, 06 Dec 2026 00:28:49 +0000`.
    static func rfc5322Date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return formatter.string(from: date)
    }
}
