/// Finds the input that TOMLKit's parser (its vendored toml++ 3.4) aborts the process on
/// instead of reporting a syntax error. toml++ checks some of its parser's preconditions
/// only with `assert`, which SwiftPM builds keep, and these are reachable from bad input:
///
/// - a table header whose key starts with a character no key can start with (`[[[1]]]`,
///   `[=]`, `[` and a control character); fixed upstream in marzer/tomlplusplus#301;
/// - `}` where an array expects a value (`a = [}]`, `a = [1,}]`);
/// - U+0085, U+2028 or U+2029 (non-ASCII line breaks) outside strings and comments.
///
/// ``ConfigLoader`` refuses such input itself, with its line, until TOMLKit ships a fixed
/// toml++. Only document-level headers matter (a `[` inside an array value is a value), so
/// the scan follows values as far as TOML lets them span lines: strings (basic, literal and
/// their multi-line forms), arrays, inline tables and comments. Input that is not valid TOML
/// elsewhere is left to TOMLKit, which stops at its first error.
enum TOMLParserGuard {
    /// The 1-based line of the first such problem and what it is, or nil.
    static func firstAbortingInput(in text: String) -> (line: Int, problem: String)? {
        var bytes = Array(text.utf8)[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        var line = 1
        var index = bytes.startIndex

        func at(_ offset: Int) -> UInt8? { index + offset < bytes.endIndex ? bytes[index + offset] : nil }
        /// U+0085 (C2 85), U+2028 and U+2029 (E2 80 A8/A9) at `index`.
        func atUnicodeLineBreak() -> Bool {
            (at(0) == 0xC2 && at(1) == 0x85) || (at(0) == 0xE2 && at(1) == 0x80 && (at(2) == 0xA8 || at(2) == 0xA9))
        }
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
        let lineBreakProblem = "a Unicode line break (U+0085, U+2028 or U+2029) outside a string or comment"

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
                if let next = at(0), !startsKey(next) && next != closeBracket {
                    return (line, "a table header needs a key after '[' or '[[' (letters, digits, '-', '_', or a quoted name)")
                }
                while at(0) != nil && at(0) != newline {
                    if atUnicodeLineBreak() { return (line, lineBreakProblem) }
                    index += 1
                }
                continue
            }
            // key = value: the key (quotes may hold '='), then the value up to the end of its last line.
            while let byte = at(0), byte != equals, byte != newline {
                if atUnicodeLineBreak() { return (line, lineBreakProblem) }
                if byte == doubleQuote || byte == singleQuote { skipString() } else { index += 1 }
            }
            guard at(0) == equals else { continue }
            index += 1
            var open: [UInt8] = []
            var expectsArrayValue = false
            while let byte = at(0) {
                if atUnicodeLineBreak() { return (line, lineBreakProblem) }
                if byte == newline && open.isEmpty { break }
                if byte == newline { line += 1 }
                if byte == hash {
                    skipToEndOfLine()
                    continue
                }
                if byte == space || byte == tab || byte == newline || byte == carriageReturn {
                    index += 1
                    continue
                }
                if expectsArrayValue && byte == closeBrace { return (line, "an array needs a value or ']' here, not '}'") }
                expectsArrayValue = false
                if byte == doubleQuote || byte == singleQuote {
                    skipString()
                    continue
                }
                switch byte {
                case openBracket, openBrace:
                    open.append(byte)
                    expectsArrayValue = byte == openBracket
                case closeBracket, closeBrace:
                    _ = open.popLast()
                case comma:
                    expectsArrayValue = open.last == openBracket
                default: break
                }
                index += 1
            }
        }
        return nil
    }

    /// A bare-key character or a quote (TOML 1.0; toml++ has Unicode bare keys switched off).
    private static func startsKey(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"), doubleQuote, singleQuote:
            true
        default: false
        }
    }

    private static let newline = UInt8(ascii: "\n")
    private static let carriageReturn = UInt8(ascii: "\r")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")
    private static let hash = UInt8(ascii: "#")
    private static let equals = UInt8(ascii: "=")
    private static let comma = UInt8(ascii: ",")
    private static let backslash = UInt8(ascii: "\\")
    private static let doubleQuote = UInt8(ascii: "\"")
    private static let singleQuote = UInt8(ascii: "'")
    private static let openBracket = UInt8(ascii: "[")
    private static let closeBracket = UInt8(ascii: "]")
    private static let openBrace = UInt8(ascii: "{")
    private static let closeBrace = UInt8(ascii: "}")
}
