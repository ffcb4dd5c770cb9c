import Foundation
import MeltyJSON
import Testing

@testable import RealtimeCore

/// RowChange's Supabase `data` JSON and Codable form, and ChangeFilter's parsing and typed matching.
@Suite("Realtime changes: data JSON and filters")
struct ChangesFormatTests {
    static let columns: [RowChange.Column] = [
        .init(name: "id", type: "int8"), .init(name: "owner", type: "uuid"), .init(name: "amount", type: "numeric"),
        .init(name: "meta", type: "jsonb"), .init(name: "body", type: "text"), .init(name: "flag", type: "bool"),
        .init(name: "ratio", type: "float8"), .init(name: "secret", type: "text"),
    ]

    static func change(_ type: RowChange.Kind, record: [String: String?], old: [String: String?] = [:]) -> RowChange {
        func fields(_ values: [String: String?]) -> [RowChange.Field] {
            columns.compactMap { column in values.keys.contains(column.name) ? RowChange.Field(name: column.name, text: values[column.name]!) : nil }
        }
        return RowChange(
            schema: "public", table: "notes", type: type, commitTimestamp: "2026-01-02T03:04:05.678Z", columns: columns, primaryKey: ["id"],
            record: fields(record), oldRecord: fields(old))
    }

    @Test("values become JSON by type: exact int8 and numeric, bool, embedded jsonb, null, escaped text, NaN as a string")
    func dataJSONValues() throws {
        let insert = Self.change(
            .insert,
            record: [
                "id": "9007199254740993", "owner": "0B7D1F0E-0000-4000-8000-000000000001", "amount": "12345678901234567890.123456789",
                "meta": #"{"a": [1, 2, {"b": "c"}]}"#, "body": "he said \"hi\" \\ ünï 😀\n", "flag": "t", "ratio": "NaN", "secret": nil,
            ])
        let text = String(decoding: insert.dataJSON(), as: UTF8.self)
        #expect(text.contains(#""id":9007199254740993"#))
        #expect(text.contains(#""amount":12345678901234567890.123456789"#))
        #expect(text.contains(#""meta":{"a": [1, 2, {"b": "c"}]}"#))
        #expect(text.contains(#""flag":true"#))
        #expect(text.contains(#""ratio":"NaN""#))
        #expect(text.contains(#""secret":null"#))
        #expect(text.contains(#""old_record":{}"#))
        #expect(text.contains(#""errors":null"#))
        let parsed = try #require(JSONValue(json: Array(text.utf8))?.objectValue)
        #expect(parsed["type"] == "INSERT")
        #expect(parsed["commit_timestamp"] == "2026-01-02T03:04:05.678Z")
        #expect(parsed["record"]?.objectValue?["body"] == .string("he said \"hi\" \\ ünï 😀\n"))
        #expect(parsed["columns"]?.arrayValue?.first == ["name": "id", "type": "int8"])
        #expect(parsed["columns"]?.arrayValue?.count == Self.columns.count)
    }

    @Test("visible columns restrict columns, record and old_record; a key-only DELETE keeps only the key")
    func visibleColumns() throws {
        let delete = Self.change(.delete, record: [:], old: ["id": "7", "owner": "a", "secret": "s"])
        let restricted = try #require(JSONValue(json: delete.dataJSON(visibleColumns: ["id", "owner"]))?.objectValue)
        #expect(restricted["record"] == .object([:]))
        #expect(restricted["old_record"] == ["id": 7, "owner": "a"])
        #expect(restricted["columns"]?.arrayValue?.count == 2)
        let keyOnly = try #require(JSONValue(json: delete.dataJSON(visibleColumns: ["id", "owner"], oldRecordKeyOnly: true))?.objectValue)
        #expect(keyOnly["old_record"] == ["id": 7])
        #expect(!String(decoding: delete.dataJSON(visibleColumns: ["id"]), as: UTF8.self).contains("secret"))
    }

    @Test("a change round-trips through JSON (it crosses kernels through Redis); the commit timestamp is ISO 8601 with ms and Z")
    func codableAndTimestamp() throws {
        let change = Self.change(.update, record: ["id": "1", "body": nil], old: ["id": "1"])
        let decoded = try JSONDecoder().decode(RowChange.self, from: JSONEncoder().encode(change))
        #expect(decoded == change)
        #expect(RowChange.timestamp(Date(timeIntervalSince1970: 1_767_322_800.5)) == "2026-01-02T03:00:00.500Z")
        #expect(RowChange.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
    }

    @Test("filters parse all seven operators, in-lists with quotes, and say what is wrong with hostile input")
    func filterParsing() throws {
        for op in ChangeFilter.Operator.allCases where op != .in {
            let filter = try ChangeFilter(parsing: "id=\(op.rawValue).5")
            #expect(filter.op == op && filter.column == "id" && filter.values == ["5"])
        }
        let list = try ChangeFilter(parsing: #"body=in.(a, b ,"c,d","e\"f")"#)
        #expect(list.values == ["a", "b", "c,d", "e\"f"])
        #expect(try ChangeFilter(parsing: "body=eq.a.b=c").values == ["a.b=c"])
        let hostile = [
            "", "id", "=eq.1", "id=eq", "id=like.%x%", "id=eq.\u{0}", "id=eq.a\nb", String(repeating: "a", count: 5_000) + "=eq.1",
            "id=in.1,2", "id=in.(\"a)", "id=in.()", "id=in.(" + (0...100).map(String.init).joined(separator: ",") + ")", #"id=in.(a"b")"#,
        ]
        for text in hostile {
            #expect(throws: ChangeFilter.ParseError.self, "\(text.prefix(40))") { try ChangeFilter(parsing: text) }
        }
        do {
            _ = try ChangeFilter(parsing: "id=regex.x")
            Issue.record("expected an unknown operator error")
        } catch let error as ChangeFilter.ParseError {
            #expect(error.description.contains("unknown operator 'regex'"))
            #expect(error.description.contains("eq, neq, lt, lte, gt, gte, in"))
        }
    }

    @Test("filters compare by type: big int8 and numeric exactly, uuid without case, bool, text; NULL and unknown columns never match")
    func filterMatching() throws {
        let row = Self.change(
            .insert,
            record: ["id": "9007199254740993", "owner": "0b7d1f0e-0000-4000-8000-00000000000a", "amount": "0.10", "body": "b", "flag": "f", "secret": nil])
        func matches(_ filter: String) throws -> Bool { try ChangeFilter(parsing: filter).matches(row) }
        #expect(try matches("id=gt.9007199254740992"))
        #expect(try !matches("id=eq.9007199254740992"))
        #expect(try matches("id=eq.9007199254740993"))
        #expect(try matches("id=lt.1e20"))
        #expect(try matches("id=gte.-5"))
        #expect(try matches("amount=eq.0.1"))
        #expect(try matches("amount=lt.0.100000000000000000001"))
        #expect(try !matches("amount=gt.0.1"))
        #expect(try !matches("amount=eq.abc"))
        #expect(try matches("owner=eq.0B7D1F0E-0000-4000-8000-00000000000A"))
        #expect(try matches("flag=eq.false"))
        #expect(try !matches("flag=eq.true"))
        #expect(try matches("body=in.(a,b)"))
        #expect(try matches("body=neq.a"))
        #expect(try matches("body=gt.a"))
        #expect(try !matches("secret=eq.null"))
        #expect(try !matches("secret=neq.x"))
        #expect(try !matches("nosuch=eq.1"))
        #expect(try matches("id=in.(1,9007199254740993)"))
        // A DELETE is judged on old_record, and only on the columns it carries.
        let delete = Self.change(.delete, record: [:], old: ["id": "42"])
        #expect(try ChangeFilter(parsing: "id=eq.42").matches(delete))
        #expect(try !ChangeFilter(parsing: "body=neq.zzz").matches(delete))
    }

    @Test("decimal text orders exactly: signs, exponents, zeros, infinities and NaN")
    func decimalOrder() throws {
        let ordered = ["-Infinity", "-1e3", "-999.5", "-0.001", "0", "0.0001", "1", "1.5", "9223372036854775806", "9223372036854775807", "1e19", "Infinity", "NaN"]
        let values = try ordered.map { try #require(DecimalText($0)) }
        for index in values.indices.dropLast() { #expect(values[index] < values[index + 1], "\(ordered[index]) < \(ordered[index + 1])") }
        #expect(DecimalText("-0") == DecimalText("0.000"))
        #expect(DecimalText("1.50") == DecimalText("15e-1"))
        #expect(DecimalText("1e9999999") == nil)
        #expect(DecimalText("1.2.3") == nil)
        #expect(!DecimalText.isJSONNumber("01") && !DecimalText.isJSONNumber("1.") && DecimalText.isJSONNumber("-0.5e+10"))
    }
}
