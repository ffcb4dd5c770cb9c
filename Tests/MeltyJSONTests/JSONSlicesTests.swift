import MeltyJSON
import Testing

@Suite struct JSONSlicesTests {
    @Test func membersKeepRawBytesAndOrder() throws {
        let members = try JSONSlices.members(of: Array(#"{"b": 12345678901234567890, "a":"x\u0041", "b":[1, {"c":null}]}"#.utf8))
        #expect(members.map(\.key) == ["b", "a", "b"])
        #expect(String(decoding: members[0].value, as: UTF8.self) == "12345678901234567890")
        #expect(JSONSlices.string(members[1].value) == "xA")
        #expect(String(decoding: members[2].value, as: UTF8.self) == #"[1, {"c":null}]"#)
    }

    @Test func surrogatePairsDecode() throws {
        let members = try JSONSlices.members(of: Array(#"{"\ud83d\ude00":1}"#.utf8))
        #expect(members.first?.key == "😀")
    }

    @Test(arguments: [
        "", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "01", "1.", "-", "\"\\ud800\"", "\"\u{1}\"", "{\"a\":1} x", "tru", "nul",
        String(repeating: "[", count: 100) + String(repeating: "]", count: 100), "\"\\x\"", "1e", "[\"\u{0}\"]",
    ])
    func refusesInvalidJSON(_ text: String) {
        #expect(!JSONSlices.isValid(Array(text.utf8)))
    }

    @Test(arguments: ["0", "-0.5e+10", "\"\"", "[]", "{}", "[[[[1]]]]", "{\"a\":[true,false,null]}", "\"é\\n\\/\""])
    func acceptsValidJSON(_ text: String) {
        #expect(JSONSlices.isValid(Array(text.utf8)))
    }

    @Test func invalidUTF8IsRefused() {
        #expect(!JSONSlices.isValid([0x22, 0xFF, 0x22]))
    }
}
