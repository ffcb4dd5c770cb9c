/// SQL text helpers: identifiers are always quoted, literals only where Postgres cannot bind.
public enum SQL {
    /// `"name"` with embedded quotes doubled.
    public static func ident(_ name: String) -> String { "\"" + doubling(name, UInt8(ascii: "\"")) + "\"" }
    /// `'text'` with quotes doubled (only for DDL, where parameters are not allowed).
    public static func literal(_ text: String) -> String { "'" + doubling(text, UInt8(ascii: "'")) + "'" }

    /// `{"a","b\"c"}`: a `text[]` literal for a bound parameter (each element quoted, `"` and `\` escaped).
    public static func textArray(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
    }

    /// `text` with every `quote` byte doubled (a byte scan: Foundation's replace is slow on Linux,
    /// and this runs for every identifier of every request).
    static func doubling(_ text: String, _ quote: UInt8) -> String {
        guard text.utf8.contains(quote) else { return text }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 4)
        for byte in text.utf8 {
            bytes.append(byte)
            if byte == quote { bytes.append(quote) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
