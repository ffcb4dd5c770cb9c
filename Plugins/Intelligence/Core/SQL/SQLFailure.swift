import Foundation

/// A statement's error as Postgres reported it (from EXPLAIN, or from the client that ran
/// the statement: constraint violations and denials only show at execution).
public struct SQLFailure: Sendable, Equatable, Codable {
    /// The SQLSTATE (`42703`).
    public var sqlState: String
    /// The primary message.
    public var message: String
    /// The detail line (`Key (email)=(a@b.c) already exists.`).
    public var detail: String?
    /// Postgres's own hint.
    public var hint: String?
    /// 1-based character position in the statement, when Postgres gave one.
    public var position: Int?
    /// The constraint's name, for constraint violations.
    public var constraint: String?

    /// A failure.
    public init(sqlState: String, message: String, detail: String? = nil, hint: String? = nil, position: Int? = nil, constraint: String? = nil) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
        self.position = position
        self.constraint = constraint
    }

    /// The double-quoted names in the message, in order (`relation "x" does not exist` → `["x"]`).
    public var quotedNames: [String] { Self.quoted(in: message) }

    /// The double-quoted parts of `text`.
    public static func quoted(in text: String) -> [String] {
        var names: [String] = []
        var current: String?
        for character in text {
            if character == "\"" {
                if let open = current {
                    names.append(open)
                    current = nil
                } else {
                    current = ""
                }
            } else if current != nil {
                current?.append(character)
            }
        }
        return names
    }

    /// The `(columns)` and `(values)` of a detail like `Key (a, b)=(1, 2) already exists.`
    public var key: (columns: [String], values: String)? {
        guard let detail, let open = detail.range(of: "Key ("), let equals = detail.range(of: ")=(", range: open.upperBound..<detail.endIndex) else { return nil }
        let columns = detail[open.upperBound..<equals.lowerBound].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let rest = detail[equals.upperBound...]
        let values = rest.range(of: ")", options: .backwards).map { String(rest[..<$0.lowerBound]) } ?? String(rest)
        return (columns, values)
    }
}
