/// Reads the RESPONSE_HEAD payload `{"status":200,"headers":[["name","value"],...]}` as the
/// runner writes it (`JSON.stringify`, keys in that order, no whitespace) in one pass over
/// the bytes: the general JSON reader cost more than the rest of a request's handling on
/// the host. Anything else (another key order, whitespace, a malformed escape) answers nil,
/// and the caller falls back to the general reader, so this only decides speed.
public enum ResponseHeadParser {
    /// The status and headers, or nil when the payload is not in the runner's exact shape.
    public static func parse(_ bytes: [UInt8]) -> (status: Int, headers: [(String, String)])? {
        bytes.withUnsafeBufferPointer { buffer -> (Int, [(String, String)])? in
            var reader = Reader(bytes: buffer)
            guard reader.literal(#"{"status":"#), let status = reader.integer(), reader.literal(#","headers":["#) else { return nil }
            var headers: [(String, String)] = []
            if !reader.literal("]") {
                while true {
                    guard reader.literal("["), let name = reader.string(), reader.literal(","), let value = reader.string(), reader.literal("]")
                    else { return nil }
                    headers.append((name, value))
                    if reader.literal(",") { continue }
                    guard reader.literal("]") else { return nil }
                    break
                }
            }
            guard reader.literal("}"), reader.atEnd else { return nil }
            return (status, headers)
        }
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        var atEnd: Bool { index == bytes.count }

        mutating func literal(_ text: StaticString) -> Bool {
            let count = text.utf8CodeUnitCount
            guard bytes.count - index >= count else { return false }
            let expected = UnsafeBufferPointer(start: text.utf8Start, count: count)
            for offset in 0..<count where bytes[index + offset] != expected[offset] { return false }
            index += count
            return true
        }

        /// A non-negative integer of at most 6 digits (statuses are 100...999).
        mutating func integer() -> Int? {
            var value = 0
            var digits = 0
            while index < bytes.count, (0x30...0x39).contains(bytes[index]), digits < 6 {
                value = value * 10 + Int(bytes[index] - 0x30)
                index += 1
                digits += 1
            }
            return digits == 0 ? nil : value
        }

        /// A JSON string literal with its escapes (`\" \\ \/ \b \f \n \r \t \uXXXX`, surrogate
        /// pairs included).
        mutating func string() -> String? {
            guard index < bytes.count, bytes[index] == 0x22 else { return nil }
            index += 1
            var output: [UInt8] = []
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                switch byte {
                case 0x22:
                    return String(validating: output, as: UTF8.self)
                case 0x5C:
                    guard index < bytes.count else { return nil }
                    let escape = bytes[index]
                    index += 1
                    switch escape {
                    case 0x22, 0x5C, 0x2F: output.append(escape)
                    case UInt8(ascii: "b"): output.append(0x08)
                    case UInt8(ascii: "f"): output.append(0x0C)
                    case UInt8(ascii: "n"): output.append(0x0A)
                    case UInt8(ascii: "r"): output.append(0x0D)
                    case UInt8(ascii: "t"): output.append(0x09)
                    case UInt8(ascii: "u"):
                        guard var scalar = hex4() else { return nil }
                        if (0xD800...0xDBFF).contains(scalar) {
                            guard literal(#"\u"#), let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return nil }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { return nil }
                        output.append(contentsOf: Array(String(Character(unicode)).utf8))
                    default:
                        return nil
                    }
                case 0x00..<0x20:
                    return nil
                default:
                    output.append(byte)
                }
            }
            return nil
        }

        private mutating func hex4() -> UInt32? {
            guard bytes.count - index >= 4 else { return nil }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                index += 1
                let digit: UInt32
                switch byte {
                case 0x30...0x39: digit = UInt32(byte - 0x30)
                case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
                default: return nil
                }
                value = value << 4 | digit
            }
            return value
        }
    }
}
