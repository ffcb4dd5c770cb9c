/// A number in decimal text (`-12.50`, `1e+20`, `9223372036854775807`, `NaN`, `-Infinity`)
/// compared exactly, without a `Double` round trip: big `int8` and `numeric` values order
/// correctly. Postgres's numeric order is kept: -Infinity < finite < Infinity < NaN.
struct DecimalText: Comparable {
    private enum Kind: Int, Comparable {
        case negativeInfinity = 0
        case finite, positiveInfinity, notANumber
        static func < (lhs: Kind, rhs: Kind) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    private let kind: Kind
    /// -1, 0 or 1.
    private let sign: Int
    /// Significant digits without leading or trailing zeros ("" for zero).
    private let digits: [UInt8]
    /// Position of the most significant digit: the value is 0.d1d2... × 10^magnitude.
    private let magnitude: Int

    /// The longest text parsed as a number (longer texts are not numbers here).
    static let maximumLength = 1_000

    /// Parses `text`; nil when it is not a decimal number.
    init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= Self.maximumLength else { return nil }
        switch text.lowercased() {
        case "nan":
            (kind, sign, digits, magnitude) = (.notANumber, 0, [], 0)
            return
        case "infinity", "+infinity", "inf":
            (kind, sign, digits, magnitude) = (.positiveInfinity, 1, [], 0)
            return
        case "-infinity", "-inf":
            (kind, sign, digits, magnitude) = (.negativeInfinity, -1, [], 0)
            return
        default: break
        }
        let bytes = Array(text.utf8)
        var index = 0
        var negative = false
        if bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
            negative = bytes[index] == UInt8(ascii: "-")
            index += 1
        }
        var all: [UInt8] = []
        var fractionDigits = 0
        var sawDigit = false
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
            all.append(bytes[index])
            sawDigit = true
            index += 1
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                all.append(bytes[index])
                fractionDigits += 1
                sawDigit = true
                index += 1
            }
        }
        guard sawDigit else { return nil }
        var exponent = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            var exponentNegative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                // Bounded: Postgres's own numeric range ends far below 10^(10^7).
                guard index - start < 6 else { return nil }
                exponent = exponent * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                index += 1
            }
            guard index > start else { return nil }
            if exponentNegative { exponent = -exponent }
        }
        guard index == bytes.count else { return nil }
        let leading = all.firstIndex { $0 != UInt8(ascii: "0") }
        guard let leading else {
            (kind, sign, digits, magnitude) = (.finite, 0, [], 0)
            return
        }
        let trailing = all.lastIndex { $0 != UInt8(ascii: "0") }!
        kind = .finite
        sign = negative ? -1 : 1
        digits = Array(all[leading...trailing])
        // all = integer digits followed by fractionDigits fraction digits.
        magnitude = (all.count - fractionDigits) - leading + exponent
    }

    /// Whether `text` is a number as JSON writes one (`-?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?`).
    static func isJSONNumber(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var index = 0
        func digitsRun() -> Int {
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            return index - start
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { return false }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digitsRun() == 0 {
            return false
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digitsRun() > 0 else { return false }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digitsRun() > 0 else { return false }
        }
        return index == bytes.count
    }

    static func == (lhs: DecimalText, rhs: DecimalText) -> Bool {
        lhs.kind == rhs.kind && lhs.sign == rhs.sign && lhs.digits == rhs.digits && (lhs.sign == 0 || lhs.magnitude == rhs.magnitude)
    }

    static func < (lhs: DecimalText, rhs: DecimalText) -> Bool {
        if lhs.kind != rhs.kind { return lhs.kind < rhs.kind }
        guard lhs.kind == .finite else { return false }
        if lhs.sign != rhs.sign { return lhs.sign < rhs.sign }
        if lhs.sign == 0 { return false }
        // Same sign: compare absolute values, then flip for negatives.
        let absoluteLess: Bool
        let absoluteEqual: Bool
        if lhs.magnitude != rhs.magnitude {
            absoluteLess = lhs.magnitude < rhs.magnitude
            absoluteEqual = false
        } else {
            absoluteLess = lhs.digits.lexicographicallyPrecedes(rhs.digits)
            absoluteEqual = lhs.digits == rhs.digits
        }
        if absoluteEqual { return false }
        return lhs.sign > 0 ? absoluteLess : !absoluteLess
    }
}
