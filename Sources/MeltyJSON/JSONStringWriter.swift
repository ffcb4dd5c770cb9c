/// The one JSON string escaper: ``CanonicalJSON`` (the audit chain's hashed text), the license
/// payload and byte-level writers that must not copy a secret into a `String` all use it.
///
/// Bytes are UTF-8 and pass through, except `"` and `\` (escaped with a backslash),
/// U+0008, U+0009, U+000A, U+000C and U+000D (`\b \t \n \f \r`) and the other bytes below
/// 0x20 (`\u00xx`, lowercase hex). NUL follows ``NulPolicy``.
public enum JSONStringWriter {
    /// What NUL becomes.
    public enum NulPolicy: Sendable {
        /// `\u0000`: the value round-trips exactly (what a client reading a secret needs).
        case escaped
        /// U+FFFD: Postgres `text` and `jsonb` cannot hold NUL, so hashed text that is
        /// stored there replaces it (``CanonicalJSON``).
        case replacementCharacter
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// Appends `bytes` (UTF-8) as a quoted JSON string literal to `output`.
    public static func append<Bytes: Sequence>(_ bytes: Bytes, to output: inout [UInt8], nul: NulPolicy = .escaped) where Bytes.Element == UInt8 {
        output.append(0x22)
        for byte in bytes {
            switch byte {
            case 0x22: output += [0x5C, 0x22]
            case 0x5C: output += [0x5C, 0x5C]
            case 0x08: output += [0x5C, UInt8(ascii: "b")]
            case 0x09: output += [0x5C, UInt8(ascii: "t")]
            case 0x0A: output += [0x5C, UInt8(ascii: "n")]
            case 0x0C: output += [0x5C, UInt8(ascii: "f")]
            case 0x0D: output += [0x5C, UInt8(ascii: "r")]
            case 0x00 where nul == .replacementCharacter: output += [0xEF, 0xBF, 0xBD]
            case 0x00..<0x20: output += [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: output.append(byte)
            }
        }
        output.append(0x22)
    }

    /// `text` as a quoted JSON string literal.
    public static func quoted(_ text: String, nul: NulPolicy = .escaped) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count + 2)
        append(text.utf8, to: &output, nul: nul)
        return String(decoding: output, as: UTF8.self)
    }
}
