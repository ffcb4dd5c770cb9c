/// Validates JSON text and cuts it into the raw bytes of its top-level members or elements,
/// without decoding the values: a relay (a broadcast payload, a claims object) passes a
/// value on byte for byte, so numbers keep every digit and nothing is re-encoded.
///
/// The grammar is RFC 8259's, strictly: no comments, no trailing commas, no leading zeros,
/// no control characters in strings, nesting at most ``maxDepth`` deep. Keys are decoded
/// (escapes included); duplicate keys are kept in order, and the caller decides (the
/// helpers here take the first).
public enum JSONSlices {
    /// Deepest nesting accepted; deeper text is refused rather than risking the stack.
    public static let maxDepth = 64

    /// Why text is not acceptable JSON, with the byte offset.
    public struct Failure: Error, CustomStringConvertible, Equatable, Sendable {
        /// What is wrong and where.
        public var description: String
    }

    /// The members of the JSON object in `bytes`, in order, values as raw byte slices.
    public static func members(of bytes: [UInt8]) throws(Failure) -> [(key: String, value: ArraySlice<UInt8>)] {
        var scanner = Scanner(bytes: bytes)
        scanner.skipSpace()
        guard scanner.peek == UInt8(ascii: "{") else { throw scanner.failure("expected a JSON object") }
        var result: [(key: String, value: ArraySlice<UInt8>)] = []
        try scanner.object(depth: 1) { key, start, end in result.append((key, bytes[start..<end])) }
        scanner.skipSpace()
        guard scanner.atEnd else { throw scanner.failure("unexpected text after the JSON value") }
        return result
    }

    /// The elements of the JSON array in `bytes`, in order, as raw byte slices.
    public static func elements(of bytes: [UInt8]) throws(Failure) -> [ArraySlice<UInt8>] {
        var scanner = Scanner(bytes: bytes)
        scanner.skipSpace()
        guard scanner.peek == UInt8(ascii: "[") else { throw scanner.failure("expected a JSON array") }
        var result: [ArraySlice<UInt8>] = []
        try scanner.array(depth: 1) { start, end in result.append(bytes[start..<end]) }
        scanner.skipSpace()
        guard scanner.atEnd else { throw scanner.failure("unexpected text after the JSON value") }
        return result
    }

    /// Whether `bytes` are one valid JSON value.
    public static func isValid(_ bytes: some Collection<UInt8>) -> Bool {
        var scanner = Scanner(bytes: Array(bytes))
        do {
            scanner.skipSpace()
            try scanner.value(depth: 0)
            scanner.skipSpace()
            return scanner.atEnd
        } catch {
            return false
        }
    }

    /// The string a raw slice holds (a JSON string literal), or nil for any other value.
    public static func string(_ raw: ArraySlice<UInt8>) -> String? {
        var scanner = Scanner(bytes: Array(raw))
        scanner.skipSpace()
        guard scanner.peek == UInt8(ascii: "\""), let text = try? scanner.string() else { return nil }
        scanner.skipSpace()
        return scanner.atEnd ? text : nil
    }

    /// Whether a raw slice is the literal `null`.
    public static func isNull(_ raw: ArraySlice<UInt8>) -> Bool {
        raw.elementsEqual("null".utf8)
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { index >= bytes.count }
        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        func failure(_ message: String) -> Failure {
            Failure(description: "\(message) at byte \(index)")
        }

        mutating func skipSpace() {
            while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
        }

        mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
            guard peek == byte else { throw failure("expected \(what)") }
            index += 1
        }

        mutating func value(depth: Int) throws(Failure) {
            guard depth <= JSONSlices.maxDepth else { throw failure("JSON nested deeper than \(JSONSlices.maxDepth) levels") }
            switch peek {
            case UInt8(ascii: "{"): try object(depth: depth + 1) { _, _, _ in }
            case UInt8(ascii: "["): try array(depth: depth + 1) { _, _ in }
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case .some(let byte) where byte == UInt8(ascii: "-") || (byte >= 0x30 && byte <= 0x39): try number()
            default: throw failure("expected a JSON value")
            }
        }

        mutating func object(depth: Int, member: (String, Int, Int) -> Void) throws(Failure) {
            guard depth <= JSONSlices.maxDepth else { throw failure("JSON nested deeper than \(JSONSlices.maxDepth) levels") }
            try expect(UInt8(ascii: "{"), "{")
            skipSpace()
            if peek == UInt8(ascii: "}") {
                index += 1
                return
            }
            while true {
                skipSpace()
                guard peek == UInt8(ascii: "\"") else { throw failure("expected a member name") }
                let key = try string()
                skipSpace()
                try expect(UInt8(ascii: ":"), ":")
                skipSpace()
                let start = index
                try value(depth: depth)
                member(key, start, index)
                skipSpace()
                if peek == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try expect(UInt8(ascii: "}"), ", or }")
                return
            }
        }

        mutating func array(depth: Int, element: (Int, Int) -> Void) throws(Failure) {
            guard depth <= JSONSlices.maxDepth else { throw failure("JSON nested deeper than \(JSONSlices.maxDepth) levels") }
            try expect(UInt8(ascii: "["), "[")
            skipSpace()
            if peek == UInt8(ascii: "]") {
                index += 1
                return
            }
            while true {
                skipSpace()
                let start = index
                try value(depth: depth)
                element(start, index)
                skipSpace()
                if peek == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                try expect(UInt8(ascii: "]"), ", or ]")
                return
            }
        }

        mutating func literal(_ word: String) throws(Failure) {
            let expected = Array(word.utf8)
            guard index + expected.count <= bytes.count, bytes[index..<index + expected.count].elementsEqual(expected) else {
                throw failure("expected \(word)")
            }
            index += expected.count
        }

        mutating func number() throws(Failure) {
            if peek == UInt8(ascii: "-") { index += 1 }
            guard let first = peek, first >= 0x30, first <= 0x39 else { throw failure("expected a digit") }
            index += 1
            if first != 0x30 { while let byte = peek, byte >= 0x30, byte <= 0x39 { index += 1 } }
            if peek == UInt8(ascii: ".") {
                index += 1
                guard let byte = peek, byte >= 0x30, byte <= 0x39 else { throw failure("expected a digit after the decimal point") }
                while let byte = peek, byte >= 0x30, byte <= 0x39 { index += 1 }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                index += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
                guard let byte = peek, byte >= 0x30, byte <= 0x39 else { throw failure("expected a digit in the exponent") }
                while let byte = peek, byte >= 0x30, byte <= 0x39 { index += 1 }
            }
        }

        /// Reads a string literal and returns its decoded text (invalid UTF-8 and lone
        /// surrogates are refused).
        mutating func string() throws(Failure) -> String {
            try expect(UInt8(ascii: "\""), "\"")
            var decoded: [UInt8] = []
            while true {
                guard let byte = peek else { throw failure("unterminated string") }
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    guard let text = String(validating: decoded, as: UTF8.self) else { throw failure("string is not valid UTF-8") }
                    return text
                case UInt8(ascii: "\\"):
                    guard let escape = peek else { throw failure("unterminated escape") }
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(escape)
                    case UInt8(ascii: "b"): decoded.append(0x08)
                    case UInt8(ascii: "f"): decoded.append(0x0C)
                    case UInt8(ascii: "n"): decoded.append(0x0A)
                    case UInt8(ascii: "r"): decoded.append(0x0D)
                    case UInt8(ascii: "t"): decoded.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800...0xDBFF).contains(scalar) {
                            guard peek == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") else {
                                throw failure("lone surrogate in string")
                            }
                            index += 2
                            let low = try hex4()
                            guard (0xDC00...0xDFFF).contains(low) else { throw failure("lone surrogate in string") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00...0xDFFF).contains(scalar) {
                            throw failure("lone surrogate in string")
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { throw failure("invalid \\u escape") }
                        decoded.append(contentsOf: Array(String(Character(unicode)).utf8))
                    default: throw failure("invalid escape")
                    }
                case 0x00..<0x20: throw failure("control character in string")
                default: decoded.append(byte)
                }
            }
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            guard index + 4 <= bytes.count else { throw failure("short \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                index += 1
                let digit: UInt32
                switch byte {
                case 0x30...0x39: digit = UInt32(byte - 0x30)
                case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
                case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
                default: throw failure("invalid hex digit in \\u escape")
                }
                value = value << 4 | digit
            }
            return value
        }
    }
}
