import Foundation
import MeltyJSON
import Testing

@Suite("Canonical JSON, the string escaper and JSONValue")
struct CanonicalJSONTests {
    static var mixed: [String: Any] {
        [
            "b": [0.1, 1e-7, 1e300, Double(1 << 60), 3.0, -0.0, 1e19] as [Any],
            "a": [Int64.max, Int64.min, UInt64.max, Int8(-3)] as [Any],
            "é": "\u{1F600}\t\u{1F}/\\", "Z": NSNull(), "z": [String: Any](), "n": NSNumber(value: true),
            "nil": Optional<Int>.none as Any,
        ]
    }
    static let mixedText =
        #"{"Z":null,"a":[9223372036854775807,-9223372036854775808,1.8446744073709552e+19,-3],"b":[0.1,1e-07,1e+300,1152921504606846976,3,0,1e+19],"n":true,"nil":null,"parsed":{"f":1.5,"one":1,"t":true},"z":{},"é":"😀\t\u001f/\\"}"#

    @Test("canonical JSON sorts keys by bytes, escapes minimally and writes numbers by value (the audit chain's text, unchanged)")
    func canonicalText() throws {
        var input = Self.mixed
        input["parsed"] = try JSONSerialization.jsonObject(with: Data(#"{"t":true,"one":1,"f":1.5}"#.utf8))
        let value = try CanonicalJSON(input)
        #expect(value.text == Self.mixedText)
        #expect(try CanonicalJSON(parsing: value.text) == value)
        #expect(try CanonicalJSON(parsing: #" { "b" : [ 1.0 , 2 ] , "a" : "x" } "#).text == #"{"a":"x","b":[1,2]}"#)
        // Every control character: the short escapes, lowercase \u00xx, NUL as U+FFFD.
        let controls = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init)))
        #expect(
            CanonicalJSON.string(controls).text
                == "\"\u{FFFD}\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
        )
        #expect(CanonicalJSON.object(["b": .integer(1), "B": .integer(2), "é": .null, "e": .bool(false)]).text == #"{"B":2,"b":1,"e":false,"é":null}"#)
    }

    @Test("values without a JSON form, non-finite numbers and broken text are refused with a reason")
    func refusals() {
        #expect(throws: CanonicalJSON.Failure.self) { try CanonicalJSON(["x": Double.nan]) }
        #expect(throws: CanonicalJSON.Failure.self) { try CanonicalJSON(["x": Date()]) }
        let broken = #expect(throws: CanonicalJSON.Failure.self) { try CanonicalJSON(parsing: "{\"a\":") }
        #expect(broken?.description.hasPrefix("details are not valid JSON") == true)
    }

    @Test("the string escaper: NUL escaped or replaced, UTF-8 passes through, bytes never become a String")
    func stringWriter() {
        #expect(JSONStringWriter.quoted("a\"b\\c\u{0}\u{8}é") == #""a\"b\\c\u0000\bé""#)
        #expect(JSONStringWriter.quoted("\u{0}", nul: .replacementCharacter) == "\"\u{FFFD}\"")
        var bytes: [UInt8] = []
        JSONStringWriter.append([0x41, 0x0A, 0x1F, 0xC3, 0xA9], to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == #""A\n\u001fé""#)
        // What JSONSerialization reads back is the original.
        let text = "tab\t quote\" nul\u{0} emoji😀 slash/"
        let decoded = try? JSONSerialization.jsonObject(with: Data(JSONStringWriter.quoted(text).utf8), options: .fragmentsAllowed) as? String
        #expect(decoded == text)
    }

    @Test("JSONValue decodes any JSON and encodes integral numbers without a fraction")
    func jsonValue() throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(#"{"a":[1,2.5,"x",true,null],"b":{}}"#.utf8))
        #expect(value == .object(["a": .array([.number(1), .number(2.5), .string("x"), .bool(true), .null]), "b": .object([:])]))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        #expect(String(decoding: try encoder.encode(value), as: UTF8.self) == #"{"a":[1,2.5,"x",true,null],"b":{}}"#)
        #expect(JSONValue.string("s").stringValue == "s" && JSONValue.number(2).numberValue == 2)
    }

    struct Answer: Encodable {
        var code: String
        @NullWhenAbsent var hint: String?
        var note: String?
    }

    @Test("NullWhenAbsent writes null for nil where a plain optional is left out")
    func nullWhenAbsent() throws {
        #expect(String(decoding: try JSONValue.serialize(Answer(code: "x", hint: nil, note: nil)), as: UTF8.self) == #"{"code":"x","hint":null}"#)
        #expect(String(decoding: try JSONValue.serialize(Answer(code: "x", hint: "h", note: "n")), as: UTF8.self) == #"{"code":"x","hint":"h","note":"n"}"#)
    }
}
