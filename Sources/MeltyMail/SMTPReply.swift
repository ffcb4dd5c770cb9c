/// One SMTP reply (RFC 5321 4.2): a three-digit code and one or more text lines
/// (`250-first`, `250-second`, `250 last`).
struct SMTPReply: Sendable, Equatable {
    /// The reply code (200 to 599).
    var code: Int
    /// The text of each line, after the code and its separator.
    var lines: [String]

    /// At most this many bytes per reply line (without CRLF): RFC 5321 allows 512, servers
    /// send longer EHLO lines; a hostile server cannot make the client buffer more.
    static let maximumLineLength = 4096
    /// At most this many lines per reply.
    static let maximumLines = 100

    /// 2xx.
    var isPositive: Bool { (200..<300).contains(code) }
    /// 4xx: a later attempt may succeed.
    var isTransient: Bool { (400..<500).contains(code) }

    /// The lines joined with spaces, control characters replaced, at most 512 characters:
    /// safe to put in an error message.
    var text: String {
        let joined = lines.joined(separator: " ")
        var cleaned = String(String.UnicodeScalarView(joined.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
        if cleaned.count > 512 { cleaned = String(cleaned.prefix(512)) + "…" }
        return cleaned
    }

    /// The EHLO keywords (upper case) with their parameters: `AUTH` → `["PLAIN", "LOGIN"]`.
    /// The first line is the server's greeting and not an extension. The old `AUTH=…`
    /// form counts as `AUTH`.
    var extensions: [String: [String]] {
        var result: [String: [String]] = [:]
        for line in lines.dropFirst() {
            let normalized = line.uppercased().hasPrefix("AUTH=") ? "AUTH " + line.dropFirst(5) : line
            var words = normalized.split(separator: " ").map { $0.uppercased() }
            guard !words.isEmpty else { continue }
            let keyword = words.removeFirst()
            result[keyword, default: []] += words
        }
        return result
    }

    /// Why a reply could not be parsed.
    struct Malformed: Error, Sendable, Equatable {
        /// What was wrong.
        var reason: String
    }

    /// Collects the lines of one reply.
    struct Parser: Sendable {
        private var code: Int?
        private var lines: [String] = []

        /// A parser for the next reply.
        init() {}

        /// Adds one line (without CRLF); returns the reply once its last line arrived.
        mutating func add(_ line: some Collection<UInt8>) throws(Malformed) -> SMTPReply? {
            guard line.count <= SMTPReply.maximumLineLength else {
                throw Malformed(reason: "a reply line is longer than \(SMTPReply.maximumLineLength) bytes")
            }
            let bytes = Array(line)
            guard bytes.count >= 3, bytes[0...2].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                throw Malformed(reason: "the reply line \(Self.preview(bytes)) does not start with a three-digit code")
            }
            let lineCode = bytes[0...2].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            guard (200...599).contains(lineCode) else {
                throw Malformed(reason: "the reply code \(lineCode) is outside 200 to 599")
            }
            if let code, code != lineCode {
                throw Malformed(reason: "a multi-line reply changes its code from \(code) to \(lineCode)")
            }
            var isLast = true
            var text: ArraySlice<UInt8> = []
            if bytes.count > 3 {
                switch bytes[3] {
                case UInt8(ascii: " "): isLast = true
                case UInt8(ascii: "-"): isLast = false
                default: throw Malformed(reason: "the reply line \(Self.preview(bytes)) has neither space nor hyphen after its code")
                }
                text = bytes[4...]
            }
            code = lineCode
            lines.append(String(decoding: text, as: UTF8.self))
            guard isLast else {
                guard lines.count < SMTPReply.maximumLines else {
                    throw Malformed(reason: "a reply has more than \(SMTPReply.maximumLines) lines")
                }
                return nil
            }
            let reply = SMTPReply(code: lineCode, lines: lines)
            self = Parser()
            return reply
        }

        private static func preview(_ bytes: [UInt8]) -> String {
            let text = String(decoding: bytes.prefix(40), as: UTF8.self)
            return String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 })).debugDescription
        }
    }

    /// Parses complete replies from `bytes` (lines ended by CRLF or LF); for tests and
    /// diagnostics. Throws for malformed, oversized or unfinished input.
    static func parseAll(_ bytes: [UInt8]) throws(Malformed) -> [SMTPReply] {
        var parser = Parser()
        var replies: [SMTPReply] = []
        var start = bytes.startIndex
        var pending = false
        while let newline = bytes[start...].firstIndex(of: 10) {
            var end = newline
            if end > start && bytes[end - 1] == 13 { end -= 1 }
            if let reply = try parser.add(bytes[start..<end]) {
                replies.append(reply)
                pending = false
            } else {
                pending = true
            }
            start = newline + 1
        }
        guard start == bytes.endIndex, !pending else { throw Malformed(reason: "the input ends inside a reply") }
        return replies
    }
}
