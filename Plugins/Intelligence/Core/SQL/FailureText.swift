import Foundation

/// Reading the pieces of Postgres messages and constants a fix needs, and correcting
/// constants that almost parse (`'1,200'` for an integer, `'31/12/2024'` for a date).
public enum FailureText {
    /// `"x"` without its quotes (doubled quotes undone); other text unchanged.
    public static func unquote(_ text: String) -> String {
        guard text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") else { return text }
        return String(text.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"")
    }

    /// `a, b(c, d), e` split at top-level commas.
    public static func splitTopLevel(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var depth = 0
        for character in text {
            if character == "(" { depth += 1 }
            if character == ")" { depth -= 1 }
            if character == ",", depth == 0 {
                parts.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
            } else {
                current.append(character)
            }
        }
        if !current.trimmingCharacters(in: .whitespaces).isEmpty { parts.append(current.trimmingCharacters(in: .whitespaces)) }
        return parts
    }

    /// The value of a standard string constant's text (`'it''s'` → `it's`); nil for others.
    public static func stringValue(_ text: String) -> String? {
        guard text.hasPrefix("'"), text.hasSuffix("'"), text.count >= 2 else { return nil }
        return String(text.dropFirst().dropLast()).replacingOccurrences(of: "''", with: "'")
    }

    private static let integerTypes: Set<String> = ["integer", "bigint", "smallint"]
    private static let numberTypes: Set<String> = ["integer", "bigint", "smallint", "numeric", "real", "double precision"]

    /// Replacement constants for `value` as `type`, each with a reason.
    public static func corrections(of value: String, type: String) -> [(String, String)] {
        var found: [(String, String)] = []
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if numberTypes.contains(type) {
            var digits = trimmed.filter { !",_ $€£%".contains($0) }
            if integerTypes.contains(type), let dot = digits.firstIndex(of: "."), digits[digits.index(after: dot)...].allSatisfy({ $0 == "0" }) {
                digits = String(digits[..<dot])
            }
            let numeric = !digits.isEmpty && digits.allSatisfy { $0.isASCII && ($0.isNumber || $0 == "." || $0 == "-") } && Double(digits) != nil
            if numeric, digits != value {
                found.append((digits, "write the number \(digits) without separators, units or quotes"))
            }
        }
        if ["date", "timestamp without time zone", "timestamp with time zone", "timestamp", "timestamptz"].contains(type) {
            found.append(contentsOf: dateCorrections(trimmed))
        }
        if type == "uuid" {
            let hex = trimmed.lowercased().filter { $0.isHexDigit }
            if hex.count == 32 {
                let characters = Array(hex)
                let groups = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(characters[$0]) }
                found.append(("'" + groups.joined(separator: "-") + "'", "a uuid is 32 hex digits in groups 8-4-4-4-12"))
            }
        }
        if type == "boolean" {
            let lower = trimmed.lowercased()
            if ["si", "sí", "ja", "oui", "vrai", "wahr"].contains(lower) { found.append(("true", "a boolean is true or false")) }
            if ["nein", "non", "faux", "falsch"].contains(lower) { found.append(("false", "a boolean is true or false")) }
        }
        return found
    }

    private static func dateCorrections(_ value: String) -> [(String, String)] {
        // d/m/yyyy, d.m.yyyy or d-m-yyyy, optionally followed by a time.
        let datePart = value.split(separator: " ", maxSplits: 1).first.map(String.init) ?? value
        let rest = value.dropFirst(datePart.count)
        let pieces = datePart.split(whereSeparator: { "/.-".contains($0) }).map(String.init)
        guard pieces.count == 3, let a = Int(pieces[0]), let b = Int(pieces[1]), let year = Int(pieces[2]), pieces[2].count == 4 else { return [] }
        var orders: [(day: Int, month: Int, reason: String)] = []
        if a > 12, b <= 12 { orders.append((a, b, "day first")) }
        if b > 12, a <= 12 { orders.append((b, a, "month first")) }
        if a <= 12, b <= 12 {
            orders.append((a, b, "day first"))
            orders.append((b, a, "month first"))
        }
        return orders.filter { $0.day >= 1 && $0.day <= 31 && $0.month >= 1 }.map { order in
            let text = String(format: "%04d-%02d-%02d", year, order.month, order.day) + rest
            return ("'" + text + "'", "write the date as ISO \(text) (read \(value) \(order.reason))")
        }
    }

    /// An example of a valid `type` constant.
    public static func example(for type: String) -> String? {
        [
            "integer": "42", "bigint": "42", "smallint": "42", "numeric": "1200.50", "date": "'2024-12-31'", "uuid": "'2f1c0a4e-8b1d-4c5e-9f00-1a2b3c4d5e6f'",
            "boolean": "true", "timestamp with time zone": "'2024-12-31 23:59:00+00'", "json": "'{\"a\": 1}'", "jsonb": "'{\"a\": 1}'",
        ][type]
    }
}
