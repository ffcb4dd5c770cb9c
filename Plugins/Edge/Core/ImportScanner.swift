/// Finds the module specifiers a JavaScript or TypeScript source names: `import … from "x"`,
/// `export … from "x"`, `import "x"`, `import("x")` with a literal, and `/// <reference
/// path|types="x" />`. A light lexer, not a parser: it skips comments, strings, template
/// literals and regular expressions so that text inside them is never taken for an
/// import, and it looks only at the token before a string. Deno's own check remains the
/// judge; this runs first so that remote imports are refused without starting Deno and a
/// path reaching out of the bundle is never handed to it.
enum ImportScanner {
    /// A specifier and where its string starts (1-based line and column, in characters).
    struct Specifier: Equatable {
        var text: String
        var line: Int
        var column: Int
    }

    /// Every specifier in `source`, in order.
    static func specifiers(in source: [UInt8]) -> [Specifier] {
        var lexer = Lexer(source: source)
        return lexer.run()
    }

    private enum Token: Equatable {
        case none
        case word(String)
        case punct(UInt8)
        case value  // a string, number or template: an operand
    }

    private struct Lexer {
        let source: [UInt8]
        var index = 0
        var line = 1
        var lineStart = 0
        var previous: Token = .none
        var beforePrevious: Token = .none
        /// For each open template literal `${`, the brace depth at which it closes.
        var templateDepths: [Int] = []
        var braceDepth = 0
        var found: [Specifier] = []

        init(source: [UInt8]) { self.source = source }

        func peek(_ offset: Int = 0) -> UInt8? { index + offset < source.count ? source[index + offset] : nil }

        /// The 1-based column of byte `position` on the current line (UTF-8 continuation bytes not counted).
        func column(of position: Int) -> Int {
            var count = 1
            var cursor = lineStart
            while cursor < position {
                if source[cursor] & 0xC0 != 0x80 { count += 1 }
                cursor += 1
            }
            return count
        }

        mutating func advance() {
            if source[index] == UInt8(ascii: "\n") {
                line += 1
                lineStart = index + 1
            }
            index += 1
        }

        mutating func push(_ token: Token) {
            beforePrevious = previous
            previous = token
        }

        mutating func run() -> [Specifier] {
            while let byte = peek() {
                switch byte {
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                    advance()
                case UInt8(ascii: "/") where peek(1) == UInt8(ascii: "/"):
                    lineComment()
                case UInt8(ascii: "/") where peek(1) == UInt8(ascii: "*"):
                    advance()
                    advance()
                    while let next = peek(), !(next == UInt8(ascii: "*") && peek(1) == UInt8(ascii: "/")) { advance() }
                    if peek() != nil {
                        advance()
                        advance()
                    }
                case UInt8(ascii: "/"):
                    if regexAllowed {
                        regex()
                        push(.value)
                    } else {
                        advance()
                        push(.punct(byte))
                    }
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    let startLine = line
                    let startColumn = column(of: index)
                    let text = quoted(byte)
                    if isImportContext {
                        found.append(Specifier(text: text, line: startLine, column: startColumn))
                    }
                    push(.value)
                case UInt8(ascii: "`"):
                    let startLine = line
                    let startColumn = column(of: index)
                    advance()
                    let context = isImportContext
                    if let text = template(), context {
                        found.append(Specifier(text: text, line: startLine, column: startColumn))
                    }
                    push(.value)
                case UInt8(ascii: "{"):
                    braceDepth += 1
                    advance()
                    push(.punct(byte))
                case UInt8(ascii: "}"):
                    if let depth = templateDepths.last, depth == braceDepth {
                        // The end of a `${…}`: the template continues.
                        templateDepths.removeLast()
                        advance()
                        _ = template()
                        push(.value)
                    } else {
                        braceDepth -= 1
                        advance()
                        push(.punct(byte))
                    }
                default:
                    if Self.isIdentifierByte(byte) {
                        let start = index
                        while let next = peek(), Self.isIdentifierByte(next) { advance() }
                        let word = String(decoding: source[start..<index], as: UTF8.self)
                        push(word.first?.isNumber == true ? .value : .word(word))
                    } else {
                        advance()
                        push(.punct(byte))
                    }
                }
            }
            return found
        }

        /// Whether a string starting now is a module specifier.
        var isImportContext: Bool {
            switch (beforePrevious, previous) {
            case (_, .word("from")), (_, .word("import")): true
            case (.word("import"), .punct(UInt8(ascii: "("))): true
            default: false
            }
        }

        /// Whether a `/` starting now begins a regular expression rather than a division.
        var regexAllowed: Bool {
            switch previous {
            case .value: false
            case .word(let word): Self.keywordsBeforeExpression.contains(word)
            case .punct(let byte): byte != UInt8(ascii: ")") && byte != UInt8(ascii: "]") && byte != UInt8(ascii: "}")
            case .none: true
            }
        }

        static let keywordsBeforeExpression: Set<String> = [
            "return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else", "yield", "await",
        ]

        static func isIdentifierByte(_ byte: UInt8) -> Bool {
            byte >= 0x80 || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "$") || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }

        /// A `'…'` or `"…"` string's content (escapes kept as written, which no specifier needs).
        mutating func quoted(_ quote: UInt8) -> String {
            advance()
            let start = index
            while let byte = peek(), byte != quote, byte != UInt8(ascii: "\n") {
                if byte == UInt8(ascii: "\\") { advance() }
                if peek() != nil { advance() }
            }
            let text = String(decoding: source[start..<min(index, source.count)], as: UTF8.self)
            if peek() == quote { advance() }
            return text
        }

        /// Reads a template literal's text up to its closing backquote (returns its content
        /// when it has no substitution) or up to a `${` (records the open substitution, returns nil).
        mutating func template() -> String? {
            let start = index
            while let byte = peek() {
                if byte == UInt8(ascii: "\\") {
                    advance()
                    if peek() != nil { advance() }
                } else if byte == UInt8(ascii: "`") {
                    let text = String(decoding: source[start..<index], as: UTF8.self)
                    advance()
                    return text
                } else if byte == UInt8(ascii: "$"), peek(1) == UInt8(ascii: "{") {
                    advance()
                    advance()
                    templateDepths.append(braceDepth)
                    return nil
                } else {
                    advance()
                }
            }
            return nil
        }

        /// Skips a regular expression literal (classes `[…]` may hold `/`).
        mutating func regex() {
            advance()
            var inClass = false
            while let byte = peek(), byte != UInt8(ascii: "\n") {
                if byte == UInt8(ascii: "\\") {
                    advance()
                    if peek() != nil { advance() }
                    continue
                }
                advance()
                if byte == UInt8(ascii: "[") {
                    inClass = true
                } else if byte == UInt8(ascii: "]") {
                    inClass = false
                } else if byte == UInt8(ascii: "/"), !inClass {
                    break
                }
            }
            while let byte = peek(), Self.isIdentifierByte(byte) { advance() }  // flags
        }

        /// Skips a `//` comment; a triple-slash `reference path|types` directive names a module.
        mutating func lineComment() {
            let start = index
            while let byte = peek(), byte != UInt8(ascii: "\n") { advance() }
            let text = String(decoding: source[start..<index], as: UTF8.self)
            guard text.hasPrefix("///"), text.contains("<reference") else { return }
            for attribute in ["path", "types"] {
                for quote in ["\"", "'"] {
                    guard let range = text.range(of: attribute + "=" + quote) else { continue }
                    let rest = text[range.upperBound...]
                    guard let end = rest.firstIndex(of: Character(quote)) else { continue }
                    let offset = text.utf8.distance(from: text.startIndex, to: range.upperBound)
                    found.append(Specifier(text: String(rest[..<end]), line: line, column: column(of: start + offset)))
                }
            }
        }
    }
}
