import MeltyJSON
import MeltyPostgres

/// The SQL of a `table_read` call, built by the plugin from structured arguments
/// `{table, columns?, filters?: [{column, op, value}], order?: [{column, direction}], limit?}`:
/// every name is a quoted identifier and every value a bind parameter, so no text of the
/// model or the user reaches the SQL except as a parameter (nothing can call `set_config`).
public struct AgentTableQuery: Sendable, Equatable {
    /// The statement (`SELECT ... FROM "schema"."table" WHERE ... ORDER BY ... LIMIT n`).
    public let sql: String
    /// Its parameters `$1...`, as text (Postgres infers each type from its use).
    public let parameters: [String?]
    /// The rows asked for (at most the configured row limit); the SQL reads one more to tell
    /// whether rows were left out.
    public let limit: Int

    /// The comparison operators a filter may use.
    public static let operators = ["eq", "neq", "lt", "lte", "gt", "gte", "like", "ilike", "is_null", "not_null", "in"]

    /// The most values of one `in` filter.
    public static let inLimit = 100

    /// The query of `arguments`, or why it is refused (a message for the model). Only tables
    /// of `schemas` are read (as the REST API exposes only its schemas): an unqualified name is
    /// looked up in the first, never through `search_path`.
    public static func build(_ arguments: [String: JSONValue], rowLimit: Int, schemas: [String] = ["public"]) -> Result<AgentTableQuery, AgentTableQueryRefusal> {
        for key in arguments.keys where !["table", "columns", "filters", "order", "limit"].contains(key) {
            return .failure(.init("unknown argument \"\(String(key.prefix(64)))\"; table_read takes table, columns, filters, order, limit"))
        }
        guard let table = arguments["table"]?.stringValue else { return .failure(.init("table_read needs a string \"table\" (a name or schema.name)")) }
        var tableParts = table.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(tableParts.count), quotedPath(tableParts) != nil, let home = schemas.first else {
            return .failure(.init("\"table\" must be a name or schema.name, each part 1 to 63 bytes without NUL"))
        }
        if tableParts.count == 1 { tableParts.insert(home, at: 0) }
        guard schemas.contains(tableParts[0]) else {
            return .failure(.init("table_read reads only the schemas \(schemas.joined(separator: ", ")), not \"\(String(tableParts[0].prefix(63)))\""))
        }
        guard let quotedTable = quotedPath(tableParts) else {
            return .failure(.init("\"table\" must be a name or schema.name, each part 1 to 63 bytes without NUL"))
        }
        var selected = "*"
        if let value = arguments["columns"], value != .null {
            guard let list = value.arrayValue, (1...100).contains(list.count) else {
                return .failure(.init("\"columns\" must be an array of 1 to 100 column names"))
            }
            var quoted: [String] = []
            for item in list {
                guard let name = item.stringValue, let column = quotedIdentifier(name) else {
                    return .failure(.init("each column must be a name of 1 to 63 bytes without NUL"))
                }
                quoted.append(column)
            }
            selected = quoted.joined(separator: ", ")
        }
        var parameters: [String?] = []
        var conditions: [String] = []
        if let value = arguments["filters"], value != .null {
            guard let list = value.arrayValue, list.count <= 32 else { return .failure(.init("\"filters\" must be an array of at most 32 {column, op, value}")) }
            for item in list {
                switch condition(item, parameters: &parameters) {
                case .success(let text): conditions.append(text)
                case .failure(let refusal): return .failure(refusal)
                }
            }
        }
        var ordering: [String] = []
        if let value = arguments["order"], value != .null {
            guard let list = value.arrayValue, list.count <= 8 else { return .failure(.init("\"order\" must be an array of at most 8 {column, direction}")) }
            for item in list {
                guard let entry = item.objectValue, let name = entry["column"]?.stringValue, let column = quotedIdentifier(name) else {
                    return .failure(.init("each order entry needs a \"column\" name of 1 to 63 bytes without NUL"))
                }
                let direction = entry["direction"]?.stringValue?.lowercased() ?? "asc"
                guard direction == "asc" || direction == "desc", entry.keys.allSatisfy({ $0 == "column" || $0 == "direction" }) else {
                    return .failure(.init("an order entry is {column, direction} with direction asc or desc"))
                }
                ordering.append("\(column) \(direction.uppercased())")
            }
        }
        var limit = rowLimit
        if let value = arguments["limit"], value != .null {
            guard let asked = value.intValue, asked >= 1 else { return .failure(.init("\"limit\" must be a positive integer")) }
            limit = min(asked, rowLimit)
        }
        var sql = "SELECT \(selected) FROM \(quotedTable)"
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        if !ordering.isEmpty { sql += " ORDER BY " + ordering.joined(separator: ", ") }
        sql += " LIMIT \(limit.addingSaturated(1))"
        return .success(AgentTableQuery(sql: sql, parameters: parameters, limit: limit))
    }

    /// One filter as SQL, its values appended to `parameters`.
    private static func condition(_ item: JSONValue, parameters: inout [String?]) -> Result<String, AgentTableQueryRefusal> {
        guard let entry = item.objectValue, let name = entry["column"]?.stringValue, let column = quotedIdentifier(name) else {
            return .failure(.init("each filter needs a \"column\" name of 1 to 63 bytes without NUL"))
        }
        guard entry.keys.allSatisfy({ ["column", "op", "value"].contains($0) }) else { return .failure(.init("a filter is {column, op, value}")) }
        guard let op = entry["op"]?.stringValue, operators.contains(op) else {
            return .failure(.init("a filter's \"op\" must be one of \(operators.joined(separator: ", "))"))
        }
        switch op {
        case "is_null": return .success("\(column) IS NULL")
        case "not_null": return .success("\(column) IS NOT NULL")
        case "in":
            guard let values = entry["value"]?.arrayValue, (1...inLimit).contains(values.count) else {
                return .failure(.init("an \"in\" filter needs a \"value\" array of 1 to \(inLimit) values"))
            }
            var placeholders: [String] = []
            for value in values {
                guard let text = parameterText(value) else { return .failure(.init("filter values must be strings, numbers or booleans without NUL")) }
                parameters.append(text)
                placeholders.append("$\(parameters.count)")
            }
            return .success("\(column) IN (\(placeholders.joined(separator: ", ")))")
        default:
            guard let value = entry["value"], let text = parameterText(value) else {
                return .failure(.init("a \"\(op)\" filter needs a \"value\" (string, number or boolean without NUL; use is_null for null)"))
            }
            parameters.append(text)
            let symbol = ["eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "like": "LIKE", "ilike": "ILIKE"][op] ?? "="
            return .success("\(column) \(symbol) $\(parameters.count)")
        }
    }

    /// A filter value as parameter text: strings, finite numbers and booleans; nil for
    /// anything else (null, arrays, objects, text holding NUL).
    static func parameterText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): return text.utf8.contains(0) ? nil : text
        case .bool(let flag): return flag ? "true" : "false"
        case .number(let number):
            guard number.isFinite else { return nil }
            if number == number.rounded(), abs(number) < 9.0e15 { return String(Int(number)) }
            return String(number)
        default: return nil
        }
    }

    /// `name` as a quoted identifier (`"na""me"`), or nil unless it is 1 to 63 bytes without NUL.
    public static func quotedIdentifier(_ name: String) -> String? {
        guard (1...63).contains(name.utf8.count), !name.utf8.contains(0) else { return nil }
        return SQL.ident(name)
    }

    private static func quotedPath(_ parts: [String]) -> String? {
        let quoted = parts.compactMap(quotedIdentifier)
        return quoted.count == parts.count ? quoted.joined(separator: ".") : nil
    }
}
