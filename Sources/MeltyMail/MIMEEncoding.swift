import Foundation

/// The encodings ``MailMessage`` renders with: quoted-printable bodies (RFC 2045),
/// encoded-words (RFC 2047), display names and folded header lines (RFC 5322).
enum MIMEEncoding {
    /// Header lines are folded above this length (RFC 5322's "should").
    static let foldLength = 78
    /// No line of a message may be longer (RFC 5322's "must", without CRLF).
    static let maximumLineLength = 998

    // MARK: Bodies

    /// `text` as quoted-printable with CRLF line ends: lines of at most 76 characters
    /// (soft breaks `=`), every byte outside printable ASCII escaped, and spaces or tabs
    /// at the end of a line escaped. A line break in `text` (CRLF, LF or CR) is a hard break.
    static func quotedPrintable(_ text: String) -> [UInt8] {
        var output: [UInt8] = []
        let lines = normalizedLines(text)
        for (lineIndex, line) in lines.enumerated() {
            var column = 0
            for (index, byte) in line.enumerated() {
                let isLast = index == line.count - 1
                let token: [UInt8]
                if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") {
                    token = isLast ? escaped(byte) : [byte]
                } else if byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=") {
                    token = [byte]
                } else {
                    token = escaped(byte)
                }
                // A soft break needs one column for its "="; the line's last token does not.
                if column + token.count > (isLast ? 76 : 75) {
                    output += Array("=\r\n".utf8)
                    column = 0
                }
                output += token
                column += token.count
            }
            if lineIndex < lines.count - 1 { output += [13, 10] }
        }
        return output
    }

    /// The lines of `text` as UTF-8 bytes; a final line break adds no empty line.
    static func normalizedLines(_ text: String) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var current: [UInt8] = []
        var previousWasCR = false
        for byte in text.utf8 {
            if byte == 10 && previousWasCR {
                previousWasCR = false
                continue
            }
            previousWasCR = byte == 13
            if byte == 10 || byte == 13 {
                lines.append(current)
                current = []
            } else {
                current.append(byte)
            }
        }
        if !current.isEmpty || lines.isEmpty { lines.append(current) }
        return lines
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    private static func escaped(_ byte: UInt8) -> [UInt8] {
        [UInt8(ascii: "="), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0x0F)]]
    }

    // MARK: Header values

    /// Whether `text` can stand in a header as it is: printable ASCII and tabs only, and
    /// nothing a reader could take for an encoded-word.
    static func isPlainHeaderText(_ text: String) -> Bool {
        !text.contains("=?") && text.utf8.allSatisfy { ($0 >= 0x20 && $0 < 0x7F) || $0 == 9 }
    }

    /// `text` as RFC 2047 "B" encoded-words of at most 75 characters each (UTF-8, never
    /// splitting a character), to be separated by folding white space.
    static func encodedWords(_ text: String) -> [String] {
        // 39 bytes are 52 base64 characters: a 64-character word, so that "Subject: " and
        // the first word stay within 78 characters (RFC 2047 allows 75 per word).
        let maximumBytes = 39
        var words: [String] = []
        var chunk: [UInt8] = []
        for scalar in text.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if chunk.count + bytes.count > maximumBytes {
                words.append(encodedWord(chunk))
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty || words.isEmpty { words.append(encodedWord(chunk)) }
        return words
    }

    private static func encodedWord(_ bytes: [UInt8]) -> String {
        "=?UTF-8?B?" + Data(bytes).base64EncodedString() + "?="
    }

    /// An unstructured value (Subject, extra headers) as tokens to fold between.
    static func unstructuredTokens(_ text: String) -> [String] {
        guard isPlainHeaderText(text) else { return encodedWords(text) }
        return text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
    }

    /// A display name as phrase tokens: atoms as they are, other ASCII as one quoted
    /// string, anything else (or a very long quoted string) as encoded-words.
    static func phraseTokens(_ name: String) -> [String] {
        let atext = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~".utf8)
        let words = name.split(separator: " ").map(String.init)
        if !name.contains("=?") && !words.isEmpty && words.allSatisfy({ $0.utf8.allSatisfy { atext.contains($0) } }) {
            return words
        }
        if isPlainHeaderText(name) && name.utf8.count <= 60 {
            var quoted = "\""
            for character in name {
                if character == "\"" || character == "\\" { quoted.append("\\") }
                quoted.append(character)
            }
            return [quoted + "\""]
        }
        return encodedWords(name)
    }

    /// Addresses as tokens: `Name <a@b>,` for each, the last without comma.
    static func addressListTokens(_ addresses: [MailAddress]) -> [String] {
        var tokens: [String] = []
        for (index, address) in addresses.enumerated() {
            if let name = address.name { tokens += phraseTokens(name) }
            tokens.append("<\(address.email)>" + (index < addresses.count - 1 ? "," : ""))
        }
        return tokens
    }

    /// `name: tokens…` joined with spaces, folded (CRLF + space) before a token that would
    /// pass 78 characters, without a trailing CRLF. Throws when a line stays above 998 bytes.
    static func headerLine(_ name: String, _ tokens: [String]) throws(MailError) -> String {
        var lines: [String] = []
        var line = name + ":"
        for token in tokens {
            // Never break before an empty token: the new line would be white space only.
            if !token.isEmpty && line.utf8.count + 1 + token.utf8.count > foldLength && line.utf8.count > name.utf8.count + 1 {
                lines.append(line)
                line = " " + token
            } else {
                line += " " + token
            }
        }
        lines.append(line)
        for candidate in lines where candidate.utf8.count > maximumLineLength {
            throw MailError("the \(name) header has a word longer than \(maximumLineLength) bytes and cannot be folded")
        }
        return lines.joined(separator: "\r\n")
    }
}
