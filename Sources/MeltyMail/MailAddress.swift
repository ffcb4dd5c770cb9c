/// A mailbox: an address and an optional display name, validated so that neither can
/// break out of an SMTP command or a header.
public struct MailAddress: Sendable, Equatable {
    /// The address (`local@domain`), as used in the envelope and in headers.
    public let email: String
    /// The display name (`"Name" <local@domain>`), encoded as needed when rendered.
    public let name: String?

    /// Validates `email` (one `@` with text on both sides, at most 254 bytes, no control
    /// characters, spaces, `<` or `>`) and `name` (no control characters such as CR, LF, NUL).
    public init(_ email: String, name: String? = nil) throws(MailError) {
        let bytes = Array(email.utf8)
        guard !bytes.isEmpty else { throw MailError("the email address is empty") }
        guard bytes.count <= 254 else { throw MailError("the email address is longer than 254 bytes") }
        for byte in bytes {
            switch byte {
            case 0x00..<0x20, 0x7F:
                throw MailError("the email address contains a control character (CR, LF, NUL or similar)")
            case UInt8(ascii: " "):
                throw MailError("the email address contains a space")
            case UInt8(ascii: "<"), UInt8(ascii: ">"):
                throw MailError("the email address contains < or >; give the bare address (name separately)")
            default:
                continue
            }
        }
        guard let at = bytes.lastIndex(of: UInt8(ascii: "@")) else {
            throw MailError("the email address \(email.debugDescription) has no @")
        }
        guard at > bytes.startIndex, at < bytes.index(before: bytes.endIndex) else {
            throw MailError("the email address \(email.debugDescription) needs text before and after the @")
        }
        if let name {
            guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw MailError("the display name contains a control character (CR, LF, NUL or similar)")
            }
        }
        self.email = email
        self.name = name.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The part after the last `@`.
    var domain: String {
        guard let at = email.lastIndex(of: "@") else { return email }
        return String(email[email.index(after: at)...])
    }

    /// Whether the address needs SMTPUTF8 (RFC 6531) to travel in the envelope.
    var isASCII: Bool { email.utf8.allSatisfy { $0 < 0x80 } }
}
