/// Splits SQL text into ``SQLToken``s the way Postgres's lexer does for the parts that matter
/// to rewriting: identifiers, quoted identifiers, string constants (standard, `E''`, dollar
/// quoted), numbers, comments and operators. Never fails: an unterminated constant or
/// comment runs to the end of the text.
public enum SQLTokenizer {
    /// The tokens of `sql`, trivia included, covering the text without gaps.
    public static func tokens(_ sql: String) -> [SQLToken] {
        let scalars = Array(sql.unicodeScalars)
        var tokens: [SQLToken] = []
        var index = 0
        while index < scalars.count {
            let start = index
            let kind = scan(scalars, &index)
            if index <= start { index = start + 1 }
            var text = String.UnicodeScalarView()
            text.append(contentsOf: scalars[start..<index])
            tokens.append(SQLToken(kind: kind, text: String(text), start: start, end: index))
        }
        return tokens
    }

    /// The tokens without trivia.
    public static func significant(_ sql: String) -> [SQLToken] { tokens(sql).filter { !$0.isTrivia } }

    private static func isIdentifierStart(_ scalar: Unicode.Scalar) -> Bool {
        (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z") || scalar == "_" || scalar.value >= 0x80
    }

    private static func isIdentifierPart(_ scalar: Unicode.Scalar) -> Bool {
        isIdentifierStart(scalar) || isDigit(scalar) || scalar == "$"
    }

    private static func isDigit(_ scalar: Unicode.Scalar) -> Bool { scalar >= "0" && scalar <= "9" }

    private static let operatorCharacters: Set<Unicode.Scalar> = ["+", "-", "*", "/", "<", ">", "=", "~", "!", "@", "#", "%", "^", "&", "|", "`", "?", ":"]

    /// Scans one token starting at `index`, leaving `index` after it.
    private static func scan(_ s: [Unicode.Scalar], _ index: inout Int) -> SQLToken.Kind {
        let count = s.count
        let c = s[index]
        let next: Unicode.Scalar? = index + 1 < count ? s[index + 1] : nil
        if c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0C}" {
            while index < count, [" ", "\t", "\n", "\r", "\u{0C}"].contains(s[index]) { index += 1 }
            return .whitespace
        }
        if c == "-", next == "-" {
            while index < count, s[index] != "\n" { index += 1 }
            return .comment
        }
        if c == "/", next == "*" {
            var depth = 0
            while index < count {
                if s[index] == "/", index + 1 < count, s[index + 1] == "*" {
                    depth += 1
                    index += 2
                } else if s[index] == "*", index + 1 < count, s[index + 1] == "/" {
                    depth -= 1
                    index += 2
                    if depth == 0 { break }
                } else {
                    index += 1
                }
            }
            return .comment
        }
        if c == "'" {
            scanQuoted(s, &index, quote: "'", backslashEscapes: false)
            return .string
        }
        if c == "E" || c == "e", next == "'" {
            index += 1
            scanQuoted(s, &index, quote: "'", backslashEscapes: true)
            return .string
        }
        if c == "B" || c == "b" || c == "X" || c == "x" || c == "N" || c == "n", next == "'" {
            index += 1
            scanQuoted(s, &index, quote: "'", backslashEscapes: false)
            return .string
        }
        if c == "U" || c == "u", next == "&", index + 2 < count, s[index + 2] == "'" || s[index + 2] == "\"" {
            let quote = s[index + 2]
            index += 2
            scanQuoted(s, &index, quote: quote, backslashEscapes: false)
            return quote == "'" ? .string : .quotedIdentifier
        }
        if c == "\"" {
            scanQuoted(s, &index, quote: "\"", backslashEscapes: false)
            return .quotedIdentifier
        }
        if c == "$" {
            if let next, isDigit(next) {
                index += 1
                while index < count, isDigit(s[index]) { index += 1 }
                return .parameter
            }
            // A dollar-quote tag: $tag$ ... $tag$.
            var end = index + 1
            while end < count, s[end] != "$", isIdentifierPart(s[end]), s[end] != "$" { end += 1 }
            if end < count, s[end] == "$" {
                let tag = Array(s[index...end])
                index = end + 1
                while index < count {
                    // Compared in place (no copy per `$`): a long tag and many `$` stay linear per candidate.
                    if s[index] == "$", index + tag.count <= count, s[index..<(index + tag.count)].elementsEqual(tag) {
                        index += tag.count
                        return .string
                    }
                    index += 1
                }
                return .string
            }
            index += 1
            return .symbol
        }
        if isIdentifierStart(c) {
            while index < count, isIdentifierPart(s[index]) { index += 1 }
            return .word
        }
        if isDigit(c) || (c == "." && next.map(isDigit) == true) {
            while index < count, isDigit(s[index]) || s[index] == "_" { index += 1 }
            if index < count, s[index] == ".", !(index + 1 < count && s[index + 1] == ".") {
                index += 1
                while index < count, isDigit(s[index]) { index += 1 }
            }
            if index < count, s[index] == "e" || s[index] == "E" {
                var probe = index + 1
                if probe < count, s[probe] == "+" || s[probe] == "-" { probe += 1 }
                if probe < count, isDigit(s[probe]) {
                    index = probe
                    while index < count, isDigit(s[index]) { index += 1 }
                }
            }
            return .number
        }
        if ["(", ")", ",", ";", "[", "]", "."].contains(c) {
            index += 1
            return .punctuation
        }
        if operatorCharacters.contains(c) {
            index += 1
            while index < count, operatorCharacters.contains(s[index]) {
                // A comment starts a new token.
                if (s[index] == "-" && index + 1 < count && s[index + 1] == "-") || (s[index] == "/" && index + 1 < count && s[index + 1] == "*") { break }
                index += 1
            }
            return .symbol
        }
        index += 1
        return .symbol
    }

    private static func scanQuoted(_ s: [Unicode.Scalar], _ index: inout Int, quote: Unicode.Scalar, backslashEscapes: Bool) {
        index += 1
        while index < s.count {
            if backslashEscapes, s[index] == "\\" {
                index += 2
                continue
            }
            if s[index] == quote {
                if index + 1 < s.count, s[index + 1] == quote {
                    index += 2
                    continue
                }
                index += 1
                return
            }
            index += 1
        }
        index = s.count
    }
}
