import MeltyJSON
import Testing

@testable import AgentCore

@Suite struct AgentTableQueryTests {
    func build(_ json: String, rowLimit: Int = 100) -> Result<AgentTableQuery, AgentTableQueryRefusal> {
        AgentTableQuery.build(JSONValue.object(json: Array(json.utf8)) ?? [:], rowLimit: rowLimit)
    }

    @Test func namesAreQuotedAndValuesAreParameters() throws {
        let query = try build(
            #"{"table":"public.notes","columns":["title","x\"y"],"filters":[{"column":"title","op":"ilike","value":"%'; drop table x; --"},"#
                + #"{"column":"id","op":"in","value":[1,"2",true]},{"column":"owner","op":"is_null"}],"order":[{"column":"title","direction":"desc"}],"limit":5}"#
        ).get()
        #expect(
            query.sql
                == #"SELECT "title", "x""y" FROM "public"."notes" WHERE "title" ILIKE $1 AND "id" IN ($2, $3, $4) AND "owner" IS NULL ORDER BY "title" DESC LIMIT 6"#)
        #expect(query.parameters == ["%'; drop table x; --", "1", "2", "true"])
        #expect(query.limit == 5)
    }

    @Test func hostileIdentifiersStayOneQuotedName() throws {
        #expect(try build(#"{"table":"notes; drop table x"}"#).get().sql == #"SELECT * FROM "public"."notes; drop table x" LIMIT 101"#)
        #expect(try build(#"{"table":"\""}"#).get().sql == #"SELECT * FROM "public"."""" LIMIT 101"#)
        #expect(try build(#"{"table":"U&\"\\0073et_config\""}"#).get().sql.hasPrefix(#"SELECT * FROM "public"."U&""\0073et_config""""#))
    }

    @Test func badNamesValuesAndOperatorsAreRefused() {
        let refused = [
            #"{"table":""}"#, #"{"table":"a.b.c"}"#, #"{"table":"a."}"#, #"{"table":"a\u0000b"}"#, "{\"table\":\"\(String(repeating: "n", count: 64))\"}",
            #"{"table":12}"#, #"{}"#, #"{"table":"t","sql":"select 1"}"#, #"{"table":"t","columns":[]}"#, #"{"table":"t","columns":[""]}"#,
            #"{"table":"t","filters":[{"column":"a","op":"= 1 or 1=1 --","value":1}]}"#, #"{"table":"t","filters":[{"column":"a","op":"eq"}]}"#,
            #"{"table":"t","filters":[{"column":"a","op":"eq","value":null}]}"#, #"{"table":"t","filters":[{"column":"a","op":"eq","value":{"x":1}}]}"#,
            #"{"table":"t","filters":[{"column":"a","op":"eq","value":"a\u0000"}]}"#, #"{"table":"t","filters":[{"column":"a","op":"in","value":[]}]}"#,
            "{\"table\":\"t\",\"filters\":[{\"column\":\"a\",\"op\":\"in\",\"value\":[\(Array(repeating: "1", count: 101).joined(separator: ","))]}]}",
            #"{"table":"t","order":[{"column":"a","direction":"sideways"}]}"#, #"{"table":"t","limit":0}"#, #"{"table":"t","limit":1.5}"#,
        ]
        for json in refused {
            guard case .failure = build(json) else {
                Issue.record("accepted \(json)")
                continue
            }
        }
    }

    @Test func onlyTheConfiguredSchemasAreRead() throws {
        for json in [#"{"table":"pg_catalog.pg_proc"}"#, #"{"table":"auth.users"}"#, #"{"table":"information_schema.tables"}"#] {
            guard case .failure(let refusal) = build(json) else {
                Issue.record("accepted \(json)")
                continue
            }
            #expect(refusal.message.contains("reads only the schemas public"))
        }
        let arguments = JSONValue.object(json: Array(#"{"table":"orders"}"#.utf8)) ?? [:]
        #expect(try AgentTableQuery.build(arguments, rowLimit: 5, schemas: ["app", "public"]).get().sql == #"SELECT * FROM "app"."orders" LIMIT 6"#)
        #expect(try build(#"{"table":"public.notes"}"#).get().sql.hasPrefix(#"SELECT * FROM "public"."notes""#))
    }

    @Test func theLimitIsCappedByTheRowLimit() throws {
        #expect(try build(#"{"table":"t","limit":1000000}"#, rowLimit: 10).get().limit == 10)
        #expect(try build(#"{"table":"t"}"#, rowLimit: 7).get().sql == #"SELECT * FROM "public"."t" LIMIT 8"#)
        #expect(try build("{\"table\":\"\(String(repeating: "é", count: 31))\"}").get().limit == 100)
    }
}
