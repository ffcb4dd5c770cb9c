/// The parts of one statement a fix needs: its significant tokens with their nesting depth,
/// the relations it names (with aliases) and the clause boundaries.
public struct SQLStatementShape: Sendable {
    /// A relation named in FROM, JOIN, UPDATE, INSERT INTO or DELETE FROM.
    public struct RelationReference: Sendable, Equatable {
        /// The schema, when written.
        public var schema: String?
        /// The relation's name (folded as Postgres folds it).
        public var name: String
        /// The alias, when given.
        public var alias: String?
        /// Index of the first token of the name in ``tokens``.
        public var tokenIndex: Int

        /// How columns of this relation are qualified: the alias, or the name.
        public var qualifier: String { alias ?? name }
    }

    /// The statement's text.
    public let sql: String
    /// Its tokens without trivia.
    public let tokens: [SQLToken]
    /// The parenthesis depth of each token (a `(` has the depth outside it).
    public let depths: [Int]
    /// The relations it names, in order.
    public let relations: [RelationReference]

    private static let clauseEnds: Set<String> = [
        "where", "group", "order", "having", "limit", "offset", "union", "intersect", "except", "window", "fetch", "for", "returning", "on", "using",
        "set", "values", "select", "join", "inner", "left", "right", "full", "cross", "natural", "lateral", "default", "tablesample", "as", "outer",
        "when", "then", "do",
    ]

    private static let fromListEnds: Set<String> = [
        "where", "group", "order", "having", "limit", "offset", "union", "intersect", "except", "window", "fetch", "for", "returning", "set", "values",
    ]

    /// The shape of `sql`.
    public init(_ sql: String) {
        self.sql = sql
        let tokens = SQLTokenizer.significant(sql)
        self.tokens = tokens
        var depths: [Int] = []
        var depth = 0
        for token in tokens {
            if token.text == ")" && token.kind == .punctuation { depth = max(0, depth - 1) }
            depths.append(depth)
            if token.text == "(" && token.kind == .punctuation { depth += 1 }
        }
        self.depths = depths
        relations = Self.findRelations(tokens, depths)
    }

    private static func findRelations(_ tokens: [SQLToken], _ depths: [Int]) -> [RelationReference] {
        var found: [RelationReference] = []
        var index = 0
        var fromListDepth: Int?
        while index < tokens.count {
            let token = tokens[index]
            let lower = token.kind == .word ? token.text.lowercased() : ""
            var starts = false
            if ["from", "join", "update", "into"].contains(lower) {
                starts = true
                if lower == "from" { fromListDepth = depths[index] } else if lower != "join" { fromListDepth = nil }
            } else if token.text == ",", token.kind == .punctuation, fromListDepth == depths[index] {
                starts = true
            } else if token.kind == .word, fromListEnds.contains(lower), depths[index] == fromListDepth {
                fromListDepth = nil
            }
            guard starts else {
                index += 1
                continue
            }
            var cursor = index + 1
            if cursor < tokens.count, tokens[cursor].isKeyword("only") || tokens[cursor].isKeyword("lateral") { cursor += 1 }
            guard cursor < tokens.count, tokens[cursor].isName, let first = tokens[cursor].name, !(tokens[cursor].kind == .word && clauseEnds.contains(first)) else {
                index += 1
                continue
            }
            let nameIndex = cursor
            var schema: String?
            var name = first
            if cursor + 2 < tokens.count, tokens[cursor + 1].text == ".", tokens[cursor + 2].isName, let second = tokens[cursor + 2].name {
                schema = first
                name = second
                cursor += 2
            }
            cursor += 1
            let opener = tokens[index].kind == .word ? tokens[index].text.lowercased() : ","
            if cursor < tokens.count, tokens[cursor].text == "(", opener != "into", opener != "update" {  // a function in FROM
                index = cursor
                continue
            }
            var alias: String?
            if cursor < tokens.count, tokens[cursor].isKeyword("as") { cursor += 1 }
            if cursor < tokens.count, tokens[cursor].isName, let candidate = tokens[cursor].name,
                !(tokens[cursor].kind == .word && (clauseEnds.contains(candidate) || SQLNames.reserved.contains(candidate)))
            {
                alias = candidate
                cursor += 1
            }
            found.append(RelationReference(schema: schema, name: name, alias: alias, tokenIndex: nameIndex))
            index = cursor
        }
        return found
    }

    /// Index of the token at 1-based character `position` (the token starting there, or the
    /// one containing it).
    public func tokenIndex(atPosition position: Int) -> Int? {
        let offset = position - 1
        return tokens.firstIndex { $0.start <= offset && offset < $0.end } ?? tokens.firstIndex { $0.start >= offset }
    }

    /// The dotted name starting at `index` (`a`, `a.b`, `a.b.c`): token indices of its parts.
    public func chain(at index: Int) -> [Int] {
        guard index < tokens.count, tokens[index].isName else { return [] }
        var parts = [index]
        var cursor = index
        while cursor + 2 < tokens.count, tokens[cursor + 1].text == ".", tokens[cursor + 1].kind == .punctuation, tokens[cursor + 2].isName {
            cursor += 2
            parts.append(cursor)
        }
        return parts
    }

    /// The token range of a simple operand ending at `index` (a constant, a dotted name, a
    /// parenthesized group, a function call, with a trailing `::type` cast).
    public func operandEnding(at index: Int) -> ClosedRange<Int>? {
        guard var range = plainOperandEnding(at: index) else { return nil }
        // `x::type` (or `x::a::b`): the operand is the whole cast expression (a loop, not
        // recursion: a hostile statement may chain thousands of casts).
        while range.lowerBound >= 2, tokens[range.lowerBound - 1].text == "::", let inner = plainOperandEnding(at: range.lowerBound - 2) {
            range = inner.lowerBound...range.upperBound
        }
        return range
    }

    private func plainOperandEnding(at index: Int) -> ClosedRange<Int>? {
        guard index >= 0, index < tokens.count else { return nil }
        var start = index
        if tokens[index].text == ")" {
            var depth = 0
            var cursor = index
            while cursor >= 0 {
                if tokens[cursor].text == ")" { depth += 1 }
                if tokens[cursor].text == "(" {
                    depth -= 1
                    if depth == 0 { break }
                }
                cursor -= 1
            }
            guard cursor >= 0 else { return nil }
            start = cursor
            if start > 0, tokens[start - 1].isName { start -= 1 }
        } else if [.string, .number, .parameter].contains(tokens[index].kind) {
            start = index
        } else if tokens[index].isName {
            start = index
            while start >= 2, tokens[start - 1].text == ".", tokens[start - 2].isName { start -= 2 }
        } else {
            return nil
        }
        return start...index
    }

    /// The token range of a simple operand starting at `index`.
    public func operandStarting(at index: Int) -> ClosedRange<Int>? {
        guard index >= 0, index < tokens.count else { return nil }
        var end = index
        if tokens[index].text == "(" {
            guard let close = matchingClose(index) else { return nil }
            end = close
        } else if [.string, .number, .parameter].contains(tokens[index].kind) {
            end = index
        } else if tokens[index].isName {
            let parts = chain(at: index)
            end = parts.last ?? index
            if end + 1 < tokens.count, tokens[end + 1].text == "(", let close = matchingClose(end + 1) { end = close }
        } else {
            return nil
        }
        while end + 2 < tokens.count, tokens[end + 1].text == "::", tokens[end + 2].isName { end += 2 }
        return index...end
    }

    /// The `)` closing the `(` at `index`.
    public func matchingClose(_ index: Int) -> Int? {
        var depth = 0
        var cursor = index
        while cursor < tokens.count {
            if tokens[cursor].text == "(" && tokens[cursor].kind == .punctuation { depth += 1 }
            if tokens[cursor].text == ")" && tokens[cursor].kind == .punctuation {
                depth -= 1
                if depth == 0 { return cursor }
            }
            cursor += 1
        }
        return nil
    }

    /// The source text of tokens `range` (with the trivia between them).
    public func text(_ range: ClosedRange<Int>) -> String {
        let scalars = Array(sql.unicodeScalars)
        let start = tokens[range.lowerBound].start
        let end = tokens[range.upperBound].end
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[start..<min(end, scalars.count)])
        return String(view)
    }

    /// The first unquoted keyword of the statement, lower case (`select`, `with`, ...).
    public var leadingKeyword: String? { tokens.first(where: { $0.kind == .word })?.text.lowercased() }

    /// Index of the first token at `depth` at or after `from` that is one of `keywords`.
    public func firstKeyword(_ keywords: Set<String>, from: Int, depth: Int) -> Int? {
        var cursor = from
        while cursor < tokens.count {
            if depths[cursor] < depth { return nil }
            if depths[cursor] == depth, tokens[cursor].kind == .word, keywords.contains(tokens[cursor].text.lowercased()) { return cursor }
            cursor += 1
        }
        return nil
    }

    /// The end offset (in scalars) of the query level that contains token `index`: the
    /// closing parenthesis around it, or the end of the statement.
    public func levelEnd(containing index: Int) -> (tokenIndex: Int, offset: Int) {
        let depth = depths[index]
        var cursor = index
        while cursor < tokens.count {
            if depths[cursor] < depth || (depths[cursor] == depth && tokens[cursor].text == ";") { return (cursor, tokens[cursor].start) }
            cursor += 1
        }
        return (tokens.count, tokens.last.map(\.end) ?? 0)
    }

    /// Splits a script into statements at top-level `;` (empty ones dropped): each with its
    /// offset in the script (scalars).
    public static func statements(_ script: String) -> [(text: String, offset: Int)] {
        let all = SQLTokenizer.tokens(script)
        let scalars = Array(script.unicodeScalars)
        var result: [(String, Int)] = []
        var start = 0
        var depth = 0
        func flush(_ end: Int) {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[start..<end])
            let text = String(view)
            if SQLTokenizer.significant(text).contains(where: { $0.text != ";" }) { result.append((text, start)) }
        }
        for token in all {
            if token.kind == .punctuation && token.text == "(" { depth += 1 }
            if token.kind == .punctuation && token.text == ")" { depth = max(0, depth - 1) }
            if token.kind == .punctuation && token.text == ";" && depth == 0 {
                flush(token.start)
                start = token.end
            }
        }
        flush(scalars.count)
        return result
    }
}
