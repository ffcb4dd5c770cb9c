/// Finds the table headers that TOMLKit's parser (its vendored toml++ 3.4) aborts the process
/// on instead of reporting: `[` or `[[` followed by a character that cannot start a key
/// (`[[[1]]]`, `[=]`, `[` and a control character). toml++ checks that only in an `assert`,
/// which SwiftPM builds keep; upstream fixed it in marzer/tomlplusplus#301. Until TOMLKit
/// ships that, ``ConfigLoader`` refuses such a header itself, with its line.
///
/// Only document-level headers matter (a `[` inside an array value is a value), so the scan
/// follows values as far as TOML allows them to span lines: strings (basic, literal and
/// their multi-line forms), arrays and inline tables, and comments. Input that is not valid
/// TOML further on is left to TOMLKit, which stops at its first error.
enum TOMLHeaderGuard {
    /// The 1-based line of the first table header whose key starts with a character no key
    /// can start with (a letter, digit, `-`, `_` or a quote), or nil.
    static func firstInvalidHeaderLine(in text: String) -> Int? {
        var bytes = Array(text.utf8)[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        var line = 1
        var index = bytes.startIndex

        func at(_ offset: Int) -> UInt8? { index + offset < bytes.endIndex ? bytes[index + offset] : nil }
        func skipToEndOfLine() { while let byte = at(0), byte != newline { index += 1 } }
        func skipBlanks() { while let byte = at(0), byte == space || byte == tab { index += 1 } }
        /// Skips a string starting at `index` (on its opening quote); counts the lines it spans.
        func skipString() {
            let quote = bytes[index]
            let multiline = at(1) == quote && at(2) == quote
            index += multiline ? 3 : 1
            while let byte = at(0) {
                if multiline && byte == quote && at(1) == quote && at(2) == quote {
                    index += 3
                    return
                }
                if !multiline && (byte == quote || byte == newline) {
                    if byte == quote { index += 1 }
                    return
                }
                if byte == newline { line += 1 }
                if byte == backslash && quote == doubleQuote {
                    index += 1
                    if at(0) == newline { line += 1 }
                }
                index += 1
            }
        }

        while index < bytes.endIndex {
            skipBlanks()
            guard let first = at(0) else { break }
            if first == newline {
                line += 1
                index += 1
                continue
            }
            if first == hash {
                skipToEndOfLine()
                continue
            }
            if first == openBracket {
                index += 1
                if at(0) == openBracket { index += 1 }
                skipBlanks()
                if let next = at(0), !startsKey(next) && next != closeBracket { return line }
                skipToEndOfLine()
                continue
            }
            // key = value: the key (quotes may hold '='), then the value up to the end of its last line.
            while let byte = at(0), byte != equals, byte != newline {
                if byte == doubleQuote || byte == singleQuote { skipString() } else { index += 1 }
            }
            guard at(0) == equals else { continue }
            index += 1
            var depth = 0
            while let byte = at(0) {
                if byte == doubleQuote || byte == singleQuote {
                    skipString()
                    continue
                }
                if byte == hash {
                    skipToEndOfLine()
                    continue
                }
                if byte == newline && depth <= 0 { break }
                if byte == newline { line += 1 }
                if byte == openBracket || byte == openBrace { depth += 1 }
                if byte == closeBracket || byte == closeBrace { depth -= 1 }
                index += 1
            }
        }
        return nil
    }

    /// A bare-key character or a quote (TOML 1.0; toml++ has Unicode bare keys switched off).
    private static func startsKey(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), doubleQuote, singleQuote: true
        default: false
        }
    }

    private static let newline = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")
    private static let hash = UInt8(ascii: "#")
    private static let equals = UInt8(ascii: "=")
    private static let backslash = UInt8(ascii: "\\")
    private static let doubleQuote = UInt8(ascii: "\"")
    private static let singleQuote = UInt8(ascii: "'")
    private static let openBracket = UInt8(ascii: "[")
    private static let closeBracket = UInt8(ascii: "]")
    private static let openBrace = UInt8(ascii: "{")
    private static let closeBrace = UInt8(ascii: "}")
}
