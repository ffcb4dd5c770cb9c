/// A `postgres_changes` filter as Supabase clients send it: `column=op.value` with `op` one
/// of `eq neq lt lte gt gte in` (`in.(a,b,"c,d")`). Values compare by the column's type:
/// numbers exactly (big `int8` and `numeric` too), `bool` as a boolean, `uuid` ignoring
/// case, anything else as text (byte order). A NULL never matches.
public struct ChangeFilter: Sendable, Equatable, CustomStringConvertible {
    /// The comparison.
    public enum Operator: String, Sendable, CaseIterable {
        /// Equal.
        case eq
        /// Not equal.
        case neq
        /// Less than.
        case lt
        /// Less than or equal.
        case lte
        /// Greater than.
        case gt
        /// Greater than or equal.
        case gte
        /// One of a list.
        case `in`
    }

    /// Why a filter string was refused.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// What is wrong and what the filter should look like.
        public var description: String
    }

    /// The column compared.
    public var column: String
    /// The comparison.
    public var op: Operator
    /// The value(s) compared with (one, except for `in`).
    public var values: [String]

    /// The longest filter string accepted.
    public static let maximumLength = 4_096
    /// The most values an `in` list may hold (Supabase's limit).
    public static let maximumInValues = 100

    /// The filter as it was written (`id=in.(1,2)`).
    public var description: String {
        let rendered =
            op == .in
            ? "(" + values.map { $0.contains(where: { ",()\"".contains($0) }) ? "\"" + $0.replacingOccurrences(of: "\"", with: "\\\"") + "\"" : $0 }.joined(separator: ",") + ")"
            : values.first ?? ""
        return "\(column)=\(op.rawValue).\(rendered)"
    }

    /// Parses `text` (`column=op.value`); throws ``ParseError`` naming what is wrong.
    public init(parsing text: String) throws {
        func refuse(_ why: String) -> ParseError {
            ParseError(description: "invalid postgres_changes filter: \(why); expected column=op.value with op one of eq, neq, lt, lte, gt, gte, in (in.(a,b,c))")
        }
        guard !text.isEmpty else { throw refuse("it is empty") }
        guard text.utf8.count <= Self.maximumLength else { throw refuse("it is longer than \(Self.maximumLength) bytes") }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { throw refuse("it contains a control character (NUL, newline, ...)") }
        guard let equals = text.firstIndex(of: "=") else { throw refuse("it has no '='") }
        let column = String(text[..<equals])
        guard !column.isEmpty else { throw refuse("the column name is empty") }
        let rest = text[text.index(after: equals)...]
        guard let dot = rest.firstIndex(of: ".") else { throw refuse("no operator before a '.'") }
        let opName = String(rest[..<dot])
        guard let op = Operator(rawValue: opName) else {
            throw refuse("unknown operator '\(opName.prefix(20))'")
        }
        let value = String(rest[rest.index(after: dot)...])
        self.column = column
        self.op = op
        if op == .in {
            self.values = try Self.list(value, refuse: refuse)
        } else {
            self.values = [value]
        }
    }

    /// A filter comparing `column` by `op` with `values`.
    public init(column: String, op: Operator, values: [String]) {
        self.column = column
        self.op = op
        self.values = values
    }

    /// `(a,b,"c,d")` → `["a", "b", "c,d"]`; `\"` inside quotes is a quote.
    private static func list(_ text: String, refuse: (String) -> ParseError) throws -> [String] {
        guard text.first == "(", text.last == ")", text.count >= 2 else { throw refuse("an in list is written in.(a,b,c)") }
        let inner = Array(text.dropFirst().dropLast())
        var values: [String] = []
        var current = ""
        var quoted = false
        var wasQuoted = false
        var index = 0
        while index < inner.count {
            let character = inner[index]
            if quoted {
                if character == "\\", index + 1 < inner.count {
                    current.append(inner[index + 1])
                    index += 1
                } else if character == "\"" {
                    quoted = false
                } else {
                    current.append(character)
                }
            } else if character == "\"" {
                guard current.isEmpty, !wasQuoted else { throw refuse("a quote in the middle of an in value") }
                quoted = true
                wasQuoted = true
            } else if character == "," {
                values.append(wasQuoted ? current : current.trimmingSpaces())
                current = ""
                wasQuoted = false
            } else {
                guard !wasQuoted else { throw refuse("text after a quoted in value") }
                current.append(character)
            }
            index += 1
        }
        guard !quoted else { throw refuse("an unterminated quote in the in list") }
        values.append(wasQuoted ? current : current.trimmingSpaces())
        guard values.count <= maximumInValues else { throw refuse("more than \(maximumInValues) values in the in list") }
        if values == [""] && !wasQuoted { throw refuse("the in list is empty") }
        return values
    }

    /// Whether `change` passes: the column's value in the new row (the old row for DELETE,
    /// where the column must be present) compares true. A column the table does not have,
    /// or a value that cannot be read as the column's type, does not match.
    public func matches(_ change: RowChange) -> Bool {
        guard let type = change.columnType(column) else { return false }
        guard let field = change.currentRow.first(where: { $0.name == column }), let value = field.text else { return false }
        switch op {
        case .in: return values.contains { Self.compare(value, $0, type: type) == 0 }
        case .eq: return Self.compare(value, values[0], type: type) == 0
        case .neq: return Self.compare(value, values[0], type: type).map { $0 != 0 } ?? false
        case .lt: return Self.compare(value, values[0], type: type).map { $0 < 0 } ?? false
        case .lte: return Self.compare(value, values[0], type: type).map { $0 <= 0 } ?? false
        case .gt: return Self.compare(value, values[0], type: type).map { $0 > 0 } ?? false
        case .gte: return Self.compare(value, values[0], type: type).map { $0 >= 0 } ?? false
        }
    }

    /// -1, 0, 1 comparing a row's `value` with a filter's `operand` as `type`; nil when the
    /// operand is not a value of that type.
    static func compare(_ value: String, _ operand: String, type: String) -> Int? {
        func order<T: Comparable>(_ left: T, _ right: T) -> Int { left < right ? -1 : (left == right ? 0 : 1) }
        switch type {
        case _ where RowChange.numericTypes.contains(type):
            guard let left = DecimalText(value), let right = DecimalText(operand) else { return nil }
            return order(left, right)
        case "bool":
            guard let left = boolean(value), let right = boolean(operand) else { return nil }
            return order(left ? 1 : 0, right ? 1 : 0)
        case "uuid":
            return bytewise(value.lowercased(), operand.lowercased())
        default:
            return bytewise(value, operand)
        }
    }

    private static func bytewise(_ left: String, _ right: String) -> Int {
        if left.utf8.elementsEqual(right.utf8) { return 0 }
        return left.utf8.lexicographicallyPrecedes(right.utf8) ? -1 : 1
    }

    /// Postgres's boolean input spellings.
    private static func boolean(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "t", "true", "yes", "y", "on", "1": return true
        case "f", "false", "no", "n", "off", "0": return false
        default: return nil
        }
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var slice = Substring(self)
        while slice.first == " " { slice = slice.dropFirst() }
        while slice.last == " " { slice = slice.dropLast() }
        return String(slice)
    }
}
