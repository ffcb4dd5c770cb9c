/// A function's name within its portal: `[a-z0-9][a-z0-9_-]{0,62}` (it appears in URLs,
/// paths on disk and NOTIFY payloads, so nothing else is accepted).
public struct FunctionName: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The longest name, in characters.
    public static let maxLength = 63

    /// What a valid name looks like (the hint of every refusal).
    public static let hint = "use 1 to 63 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit"

    /// The validated name.
    public let value: String

    /// Validates `text`; throws ``EdgeDeployError/Code/invalidName`` saying which rule it breaks.
    public init(_ text: String) throws(EdgeDeployError) {
        let bytes = Array(text.utf8)
        let hint = Self.hint
        guard let first = bytes.first else {
            throw EdgeDeployError(.invalidName, "the function name is empty", hint: hint)
        }
        guard bytes.count <= Self.maxLength else {
            throw EdgeDeployError(.invalidName, "the function name is \(bytes.count) bytes long; the limit is \(Self.maxLength)", hint: hint)
        }
        guard Self.isLowerAlphanumeric(first) else {
            throw EdgeDeployError(.invalidName, "the function name \(Self.quoted(text)) must start with a lowercase letter or a digit", hint: hint)
        }
        if let bad = bytes.first(where: { !Self.isLowerAlphanumeric($0) && $0 != UInt8(ascii: "-") && $0 != UInt8(ascii: "_") }) {
            let what = bad < 0x80 ? "'\(Character(Unicode.Scalar(bad)))'" : "a non-ASCII character"
            throw EdgeDeployError(.invalidName, "the function name \(Self.quoted(text)) contains \(what)", hint: hint)
        }
        value = text
    }

    /// The name.
    public var description: String { value }

    /// Orders by name.
    public static func < (lhs: FunctionName, rhs: FunctionName) -> Bool { lhs.value < rhs.value }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    /// `text` for a message: quoted, control characters escaped, cut at 80 characters.
    static func quoted(_ text: String) -> String {
        let shown = text.unicodeScalars.prefix(80).map { $0.properties.generalCategory == .control ? $0.escaped(asASCII: true) : String($0) }.joined()
        return "'" + shown + (text.unicodeScalars.count > 80 ? "…" : "") + "'"
    }
}
