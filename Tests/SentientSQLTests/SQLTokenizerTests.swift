import Testing

@testable import SentientSQL

@Suite struct SQLTokenizerTests {
    @Test func coversTheTextWithoutGaps() {
        let sql = "SELECT \"userName\", 'it''s' AS x, $tag$ a;b $tag$, E'\\'' FROM t -- c\n/* nested /* c */ */ WHERE a <= $1;"
        let tokens = SQLTokenizer.tokens(sql)
        #expect(tokens.map(\.text).joined() == sql)
        var offset = 0
        for token in tokens {
            #expect(token.start == offset)
            offset = token.end
        }
        let significant = SQLTokenizer.significant(sql)
        #expect(significant.filter { $0.kind == .string }.map(\.text) == ["'it''s'", "$tag$ a;b $tag$", "E'\\''"])
        #expect(significant.first { $0.kind == .quotedIdentifier }?.name == "userName")
        #expect(significant.contains { $0.kind == .parameter && $0.text == "$1" })
        #expect(significant.contains { $0.kind == .symbol && $0.text == "<=" })
    }

    @Test func foldsUnquotedNames() {
        let tokens = SQLTokenizer.significant("SELECT FullName FROM \"Orders\"")
        #expect(tokens[1].name == "fullname")
        #expect(tokens[3].name == "Orders")
    }

    @Test func unterminatedConstantsRunToTheEnd() {
        for sql in ["SELECT 'abc", "SELECT \"abc", "SELECT $$abc", "SELECT /* abc", "E'\\"] {
            let tokens = SQLTokenizer.tokens(sql)
            #expect(tokens.map(\.text).joined() == sql)
        }
    }

    @Test func positionsCountUnicodeScalars() {
        let sql = "SELECT 'é日本' , nmae"
        let token = SQLTokenizer.significant(sql).last
        #expect(token?.text == "nmae")
        #expect(token?.start == 15)
    }

    @Test func hostileInputDoesNotCrash() {
        let inputs = [String(repeating: "(", count: 10_000), String(repeating: "'", count: 9_999), "\u{0}\u{FFFF}𝔘", String(repeating: "-", count: 5_000), "$", "$1$"]
        for input in inputs {
            #expect(SQLTokenizer.tokens(input).map(\.text).joined() == input)
            _ = SQLStatementShape(input)
        }
        // Thousands of chained casts: the operand walk is a loop, not recursion.
        let casts = SQLStatementShape("SELECT 1" + String(repeating: "::int", count: 30_000) + " = 'x'")
        let equals = casts.tokens.lastIndex { $0.text == "=" } ?? 0
        #expect(casts.operandEnding(at: equals - 1) == 1...(equals - 1))
    }
}
