import Testing

@testable import SentientSQL

@Suite struct SQLRewritingTests {
    @Test func levenshtein() {
        #expect(NameDistance.levenshtein("nmae", "name") == 2)
        #expect(NameDistance.levenshtein("", "abc") == 3)
        #expect(NameDistance.levenshtein("customers", "custmers") == 1)
        #expect(NameDistance.levenshtein("same", "same") == 0)
    }

    @Test func nearestIgnoresCaseAndKeepsOrderOnTies() {
        let found = NameDistance.nearest(to: "FullName", in: ["id", "fullName", "email", "fullname"])
        #expect(found.map(\.name) == ["fullName", "fullname"])
        #expect(NameDistance.nearest(to: "zzzzzz", in: ["id", "name"]).isEmpty)
    }

    @Test func quoting() {
        #expect(SQLNames.quoted("name") == "name")
        #expect(SQLNames.quoted("fullName") == "\"fullName\"")
        #expect(SQLNames.quoted("order") == "\"order\"")
        #expect(SQLNames.quoted("a\"b") == "\"a\"\"b\"")
        #expect(SQLNames.qualified("reporting", "monthly_sales") == "reporting.monthly_sales")
    }

    @Test func editsReplaceTokensNotSubstrings() {
        let sql = "SELECT nmae, 'nmae' FROM t WHERE nmae_x = 1"
        let shape = SQLStatementShape(sql)
        let token = shape.tokens[1]
        #expect(SQLEdit.apply([SQLEdit(replacing: token, with: "name")], to: sql) == "SELECT name, 'nmae' FROM t WHERE nmae_x = 1")
        let both = SQLEdit.apply([.insert(" GROUP BY a", at: sql.unicodeScalars.count), SQLEdit(replacing: token, with: "n")], to: sql)
        #expect(both == "SELECT n, 'nmae' FROM t WHERE nmae_x = 1 GROUP BY a")
    }

    @Test func relationsAndAliases() {
        let shape = SQLStatementShape("SELECT * FROM public.orders o JOIN products AS p ON p.id = o.product_id, customers WHERE true")
        #expect(shape.relations.map(\.name) == ["orders", "products", "customers"])
        #expect(shape.relations.map(\.qualifier) == ["o", "p", "customers"])
        #expect(shape.relations.first?.schema == "public")
        let insert = SQLStatementShape("INSERT INTO countries (code, name) VALUES ('x', 'y')")
        #expect(insert.relations.map(\.name) == ["countries"])
        let function = SQLStatementShape("SELECT * FROM generate_series(1, 3) g, t")
        #expect(function.relations.map(\.name) == ["t"])
    }

    @Test func statementsSplitAtTopLevelSemicolons() throws {
        let script = "SELECT ';'; SELECT $$;$$ ; ; SELECT (1)"
        let statements = SQLStatementShape.statements(script)
        #expect(statements.count == 3)
        #expect(statements[1].text.contains("$$;$$"))
        #expect(throws: SQLDoctor.InputError.severalStatements(3)) { try SQLDoctor.statement(from: script, position: nil) }
        let picked = try SQLDoctor.statement(from: "SELECT 1; SELECT nmae FROM t", position: 18)
        #expect(picked.text == "SELECT nmae FROM t")
        #expect(picked.position == 8)
        #expect(throws: SQLDoctor.InputError.nulByte) { try SQLDoctor.statement(from: "SELECT 1\u{0}", position: nil) }
        #expect(throws: SQLDoctor.InputError.empty) { try SQLDoctor.statement(from: " ; ", position: nil) }
    }

    @Test func constantCorrections() {
        #expect(FailureText.corrections(of: "1,200", type: "integer").map(\.0) == ["1200"])
        #expect(FailureText.corrections(of: "3.0", type: "integer").map(\.0) == ["3"])
        #expect(FailureText.corrections(of: "$24.00", type: "numeric").map(\.0) == ["24.00"])
        #expect(FailureText.corrections(of: "ten", type: "integer").isEmpty)
        #expect(FailureText.corrections(of: "31/05/2024", type: "date").map(\.0) == ["'2024-05-31'"])
        #expect(FailureText.corrections(of: "02/03/2024", type: "date").map(\.0) == ["'2024-03-02'", "'2024-02-03'"])
    }

    @Test func failureTexts() {
        let failure = SQLFailure(sqlState: "23505", message: "duplicate key value violates unique constraint \"c_pkey\"", detail: "Key (a, b)=(1, x) already exists.")
        #expect(failure.quotedNames == ["c_pkey"])
        #expect(failure.key?.columns == ["a", "b"])
        #expect(failure.key?.values == "1, x")
        #expect(FailureText.splitTopLevel("numeric(10, 2), integer") == ["numeric(10, 2)", "integer"])
    }
}
