import Foundation
import MeltyJSON
import MeltyPostgres

/// A metadata filter of a query, parsed from JSON and turned into a parameterised SQL
/// predicate over the `metadata jsonb` column.
///
/// Grammar (documented in `docs/intelligence-vectors.md`): an object whose keys are
/// metadata paths (`"topic"`, `"author.country"`) or `$and`/`$or`/`$not`. A plain value
/// means equality; an object of operators means `$eq`, `$ne`, `$in`, `$nin`, `$gt`, `$gte`,
/// `$lt`, `$lte` (numbers or strings) and `$exists` (boolean). Several keys are ANDed.
public indirect enum VectorFilter: Sendable, Equatable {
    /// Every clause holds.
    case all([VectorFilter])
    /// At least one clause holds.
    case any([VectorFilter])
    /// The clause does not hold.
    case not(VectorFilter)
    /// The value at `path` equals `value` (JSON equality, containment for objects).
    case equals(path: [String], value: JSONValue)
    /// The value at `path` is absent or differs from `value`.
    case notEquals(path: [String], value: JSONValue)
    /// The value at `path` is one of `values`.
    case oneOf(path: [String], values: [JSONValue])
    /// The value at `path` is none of `values` (or absent).
    case noneOf(path: [String], values: [JSONValue])
    /// The value at `path` compares with `value` (numbers with numbers, strings with strings, byte order).
    case compare(path: [String], operator: String, value: JSONValue)
    /// The path is present (`true`) or absent (`false`).
    case exists(path: [String], present: Bool)

    /// Why a filter is refused.
    public struct Problem: Error, CustomStringConvertible, Sendable, Equatable {
        /// What is wrong, for the caller.
        public let message: String
        /// The message.
        public var description: String { message }
    }

    /// Most clauses a filter may have.
    public static let maxClauses = 64
    /// Deepest nesting of `$and`/`$or`/`$not`.
    public static let maxDepth = 8
    /// Most values in one `$in`/`$nin`.
    public static let maxValues = 1_000
    /// Longest path in bytes, and most segments.
    public static let maxPathBytes = 256
    private static let maxPathSegments = 8

    /// Parses a filter object.
    public static func parse(_ value: JSONValue) throws(Problem) -> VectorFilter {
        var clauses = 0
        return try parse(value, depth: 0, clauses: &clauses)
    }

    private static func parse(_ value: JSONValue, depth: Int, clauses: inout Int) throws(Problem) -> VectorFilter {
        guard depth <= maxDepth else { throw Problem(message: "the filter nests deeper than \(maxDepth) levels") }
        guard let object = value.objectValue else { throw Problem(message: "a filter must be a JSON object, not \(value.kind)") }
        var parts: [VectorFilter] = []
        for key in object.keys.sorted() {
            guard let member = object[key] else { continue }
            clauses += 1
            guard clauses <= maxClauses else { throw Problem(message: "the filter has more than \(maxClauses) clauses") }
            switch key {
            case "$and", "$or":
                guard let items = member.arrayValue, !items.isEmpty else { throw Problem(message: "\(key) takes a non-empty array of filters") }
                var inner: [VectorFilter] = []
                for item in items { inner.append(try parse(item, depth: depth + 1, clauses: &clauses)) }
                parts.append(key == "$and" ? .all(inner) : .any(inner))
            case "$not":
                parts.append(.not(try parse(member, depth: depth + 1, clauses: &clauses)))
            default:
                let path = try parsePath(key)
                parts.append(contentsOf: try parseCondition(path: path, key: key, member))
            }
        }
        return parts.count == 1 ? parts[0] : .all(parts)
    }

    /// A metadata key as a path (`"author.country"` is `["author", "country"]`).
    public static func parsePath(_ key: String) throws(Problem) -> [String] {
        if key.hasPrefix("$") { throw Problem(message: "unknown filter operator \(quoted(key)); use $and, $or, $not or a metadata key") }
        guard !key.isEmpty, key.utf8.count <= maxPathBytes else { throw Problem(message: "a filter key must have 1...\(maxPathBytes) bytes") }
        guard !key.unicodeScalars.contains(where: { $0.value < 0x20 }) else { throw Problem(message: "a filter key contains a NUL or control character") }
        let segments = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard segments.count <= maxPathSegments, !segments.contains(where: \.isEmpty) else {
            throw Problem(message: "the filter key \(quoted(key)) is not a dotted path of at most \(maxPathSegments) non-empty parts")
        }
        return segments
    }

    private static func parseCondition(path: [String], key: String, _ member: JSONValue) throws(Problem) -> [VectorFilter] {
        guard let operators = member.objectValue, let first = operators.keys.first, first.hasPrefix("$") else {
            try checkScalar(member, key: key)
            return [.equals(path: path, value: member)]
        }
        var parts: [VectorFilter] = []
        for name in operators.keys.sorted() {
            guard let operand = operators[name] else { continue }
            switch name {
            case "$eq":
                try checkScalar(operand, key: key)
                parts.append(.equals(path: path, value: operand))
            case "$ne":
                try checkScalar(operand, key: key)
                parts.append(.notEquals(path: path, value: operand))
            case "$in", "$nin":
                guard let values = operand.arrayValue else { throw Problem(message: "\(name) on \(quoted(key)) takes an array") }
                guard values.count <= maxValues else { throw Problem(message: "\(name) on \(quoted(key)) has more than \(maxValues) values") }
                for value in values { try checkScalar(value, key: key) }
                parts.append(name == "$in" ? .oneOf(path: path, values: values) : .noneOf(path: path, values: values))
            case "$gt", "$gte", "$lt", "$lte":
                switch operand {
                case .number, .string: parts.append(.compare(path: path, operator: name, value: operand))
                default: throw Problem(message: "\(name) on \(quoted(key)) takes a number or a string, not \(operand.kind)")
                }
            case "$exists":
                guard let present = operand.boolValue else { throw Problem(message: "$exists on \(quoted(key)) takes true or false") }
                parts.append(.exists(path: path, present: present))
            default:
                throw Problem(message: "unknown filter operator \(quoted(name)) on \(quoted(key)); use $eq, $ne, $in, $nin, $gt, $gte, $lt, $lte or $exists")
            }
        }
        return parts
    }

    private static func checkScalar(_ value: JSONValue, key: String) throws(Problem) {
        switch value {
        case .string(let text) where text.utf8.count > VectorCollectionLimits.metadataBytes:
            throw Problem(message: "a value compared with \(quoted(key)) is longer than the metadata limit")
        case .string(let text) where text.contains("\u{0}"):
            throw Problem(message: "a value compared with \(quoted(key)) contains a NUL character")
        case .array, .object:
            throw Problem(message: "\(quoted(key)) is compared with \(value.kind); use a string, number, boolean or null")
        default: return
        }
    }

    private static func quoted(_ text: String) -> String { "\"" + String(text.prefix(80)) + "\"" }

    /// This filter as a SQL boolean over `column` (a `jsonb`), its values appended to
    /// `parameters` and referenced as `$n` (so nothing from the caller is spliced into SQL).
    public func sql(column: String, parameters: inout [String?]) -> String {
        func bind(_ text: String) -> String {
            parameters.append(text)
            return "$\(parameters.count)"
        }
        func pathSQL(_ path: [String]) -> String { "(\(column) #> \(bind(SQL.textArray(path)))::text[])" }
        switch self {
        case .all(let parts):
            return parts.isEmpty ? "true" : "(" + parts.map { $0.sql(column: column, parameters: &parameters) }.joined(separator: " AND ") + ")"
        case .any(let parts):
            return parts.isEmpty ? "false" : "(" + parts.map { $0.sql(column: column, parameters: &parameters) }.joined(separator: " OR ") + ")"
        case .not(let inner):
            return "(NOT coalesce(\(inner.sql(column: column, parameters: &parameters)), false))"
        case .equals(let path, let value):
            return "(\(pathSQL(path)) = \(bind(Self.json(value)))::jsonb)"
        case .notEquals(let path, let value):
            return "(\(pathSQL(path)) IS DISTINCT FROM \(bind(Self.json(value)))::jsonb)"
        case .oneOf(let path, let values):
            return "(\(pathSQL(path)) IN (SELECT jsonb_array_elements(\(bind(Self.json(.array(values))))::jsonb)))"
        case .noneOf(let path, let values):
            let target = pathSQL(path)
            return "(\(target) IS NULL OR \(target) NOT IN (SELECT jsonb_array_elements(\(bind(Self.json(.array(values))))::jsonb)))"
        case .compare(let path, let name, let value):
            let symbol =
                switch name {
                case "$gt": ">"
                case "$gte": ">="
                case "$lt": "<"
                default: "<="
                }
            let target = pathSQL(path)
            if case .number(let number) = value {
                return "((CASE WHEN jsonb_typeof(\(target)) = 'number' THEN (\(target))::numeric END) \(symbol) \(bind(Self.decimal(number)))::numeric)"
            }
            return
                "((CASE WHEN jsonb_typeof(\(target)) = 'string' THEN (\(target) #>> '{}') END) COLLATE \"C\" \(symbol) \(bind(value.stringValue ?? ""))::text COLLATE \"C\")"
        case .exists(let path, let present):
            return "(\(pathSQL(path)) IS \(present ? "NOT " : "")NULL)"
        }
    }

    /// `value` as JSON text (for a `jsonb` parameter).
    static func json(_ value: JSONValue) -> String {
        (try? JSONValue.serialize(value)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }

    /// `number` as a `numeric` literal (integers without a fraction).
    static func decimal(_ number: Double) -> String {
        if let exact = Int64(exactly: number) { return String(exact) }
        return "\(number)"
    }
}
