/// One lexical token of a SQL statement and where it lies in the statement, counted in
/// Unicode scalars (Postgres reports error positions in characters, 1-based).
public struct SQLToken: Sendable, Equatable {
    /// What a token is.
    public enum Kind: Sendable, Equatable {
        /// An unquoted identifier or keyword (`select`, `users`).
        case word
        /// A double-quoted identifier (`"userName"`).
        case quotedIdentifier
        /// A string constant (`'x'`, `E'x'`, `$$x$$`).
        case string
        /// A numeric constant.
        case number
        /// A positional parameter (`$1`).
        case parameter
        /// An operator (`=`, `::`, `<>`).
        case symbol
        /// One of `( ) , ; [ ] .`.
        case punctuation
        /// A `--` or `/* */` comment.
        case comment
        /// Spaces and line breaks.
        case whitespace
    }

    /// The token's kind.
    public var kind: Kind
    /// The token exactly as written.
    public var text: String
    /// Offset of the first scalar (0-based).
    public var start: Int
    /// Offset after the last scalar.
    public var end: Int

    /// Creates a token.
    public init(kind: Kind, text: String, start: Int, end: Int) {
        self.kind = kind
        self.text = text
        self.start = start
        self.end = end
    }

    /// The name an identifier denotes: an unquoted word folded to lower case (as Postgres
    /// folds it), a quoted identifier unescaped; nil for other tokens.
    public var name: String? {
        switch kind {
        case .word: return text.lowercased()
        case .quotedIdentifier:
            var inner = text.dropFirst()
            if inner.hasSuffix("\"") { inner = inner.dropLast() }
            return inner.replacingOccurrences(of: "\"\"", with: "\"")
        default: return nil
        }
    }

    /// Whether the token is an identifier or keyword.
    public var isName: Bool { kind == .word || kind == .quotedIdentifier }

    /// Whether the token is the (unquoted) keyword `keyword` (lower case).
    public func isKeyword(_ keyword: String) -> Bool { kind == .word && text.lowercased() == keyword }

    /// Whether the token carries no meaning (whitespace or a comment).
    public var isTrivia: Bool { kind == .whitespace || kind == .comment }
}
