import Foundation
import MeltyPostgres
import PortalDatabaseCore

/// A PostgREST request parse error: 400 `PGRST100` with what could not be read.
struct RestParseError: Error {
    var message: String
    var details: String?
}

/// A column reference, optionally followed by a JSON path (`data->a->>b`).
struct FieldPath: Equatable {
    var name: String
    /// (`->` or `->>`, key) steps.
    var json: [(arrow: String, key: String)] = []

    static func == (lhs: FieldPath, rhs: FieldPath) -> Bool {
        lhs.name == rhs.name && lhs.json.map { $0.arrow + $0.key } == rhs.json.map { $0.arrow + $0.key }
    }

    /// SQL for this field on `alias` (identifiers quoted, JSON keys as escaped literals).
    func sql(on alias: String) -> String {
        var text = SQL.ident(alias) + "." + SQL.ident(name)
        for step in json {
            // An array index goes in bare only when it is ASCII digits that fit an integer: other
            // "numbers" (Unicode digits such as ١٢) would be spliced into the SQL unquoted.
            let isIndex = !step.key.isEmpty && step.key.utf8.count <= 9 && step.key.utf8.allSatisfy { (48...57).contains($0) }
            let key = isIndex ? step.key : SQL.literal(step.key)
            text = "(" + text + step.arrow + key + ")"
        }
        return text
    }

    /// The name a selected JSON path gets when not aliased (its last key), as in PostgREST.
    var defaultAlias: String { json.last?.key ?? name }

    /// Parses `name`, `"quoted name"` or `name->a->>b`.
    static func parse(_ text: String) throws -> FieldPath {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var parts: [(String, String)] = []
        var rest = Substring(trimmed)
        var name = ""
        if rest.hasPrefix("\"") {
            guard let end = rest.dropFirst().firstIndex(of: "\"") else { throw RestParseError(message: "unterminated quoted column name in \"\(text)\"") }
            name = String(rest[rest.index(after: rest.startIndex)..<end])
            rest = rest[rest.index(after: end)...]
        } else if let arrow = rest.range(of: "->") {
            name = String(rest[..<arrow.lowerBound])
            rest = rest[arrow.lowerBound...]
        } else {
            name = String(rest)
            rest = ""
        }
        while !rest.isEmpty {
            let arrow = rest.hasPrefix("->>") ? "->>" : rest.hasPrefix("->") ? "->" : ""
            guard !arrow.isEmpty else { throw RestParseError(message: "unexpected \"\(rest)\" after column \"\(name)\"") }
            rest = rest.dropFirst(arrow.count)
            let next = rest.range(of: "->")?.lowerBound ?? rest.endIndex
            let key = String(rest[..<next])
            guard !key.isEmpty else { throw RestParseError(message: "empty JSON key in \"\(text)\"") }
            parts.append((arrow, key))
            rest = rest[next...]
        }
        guard !name.isEmpty else { throw RestParseError(message: "missing column name in \"\(text)\"") }
        return FieldPath(name: name, json: parts)
    }
}

/// One filter: `column=[not.]op[(modifier)].value`.
struct RestFilter {
    var field: FieldPath
    var negated: Bool
    var op: String
    /// `any`/`all` for list comparisons, or the text-search configuration for fts operators.
    var modifier: String?
    var value: String

    static let operators: [String: String] = [
        "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE", "ilike": "ILIKE",
        "match": "~", "imatch": "~*", "cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>", "nxr": "&<", "nxl": "&>", "adj": "-|-",
    ]
    static let textSearch: [String: String] = ["fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery", "wfts": "websearch_to_tsquery"]
    static let known: Set<String> = Set(operators.keys).union(textSearch.keys).union(["in", "is", "isdistinct"])

    /// Parses the part after `column=` (or after `column.` inside a logic tree).
    static func parse(field: FieldPath, expression: String) throws -> RestFilter {
        var rest = Substring(expression)
        var negated = false
        if rest.hasPrefix("not.") {
            negated = true
            rest = rest.dropFirst(4)
        }
        guard let dot = rest.firstIndex(of: ".") else {
            throw RestParseError(message: "failed to parse filter (\(expression))", details: "expected operator.value, e.g. eq.5")
        }
        var op = String(rest[..<dot])
        let value = String(rest[rest.index(after: dot)...])
        var modifier: String?
        if let open = op.firstIndex(of: "("), op.hasSuffix(")") {
            modifier = String(op[op.index(after: open)..<op.index(before: op.endIndex)])
            op = String(op[..<open])
        }
        guard known.contains(op) else {
            throw RestParseError(message: "failed to parse filter (\(expression))", details: "unknown operator \"\(op)\"")
        }
        if let modifier {
            if textSearch[op] != nil {
                guard modifier.range(of: "^[A-Za-z_][A-Za-z0-9_]*$", options: .regularExpression) != nil else {
                    throw RestParseError(message: "failed to parse filter (\(expression))", details: "invalid text search configuration \"\(modifier)\"")
                }
            } else {
                guard modifier == "any" || modifier == "all", operators[op] != nil, !["cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj"].contains(op) else {
                    throw RestParseError(message: "failed to parse filter (\(expression))", details: "modifier \"\(modifier)\" is not allowed with \(op)")
                }
            }
        }
        return RestFilter(field: field, negated: negated, op: op, modifier: modifier, value: value)
    }
}

/// A filter or an `and`/`or` group of conditions.
indirect enum RestCondition {
    case filter(RestFilter)
    case group(isAnd: Bool, negated: Bool, [RestCondition])

    /// Parses the value of `or=`/`and=` (`(a.eq.1,and(b.gt.2,c.lt.3))`).
    static func parseGroup(isAnd: Bool, negated: Bool, text: String) throws -> RestCondition {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("("), trimmed.hasSuffix(")") else {
            throw RestParseError(message: "failed to parse logic tree (\(text))", details: "expected a parenthesised list, e.g. (a.eq.1,b.eq.2)")
        }
        let inner = String(trimmed.dropFirst().dropLast())
        var items: [RestCondition] = []
        for item in try RestSplit.topLevel(inner, separator: ",") {
            let part = item.trimmingCharacters(in: .whitespaces)
            var negatedItem = false
            var body = Substring(part)
            if body.hasPrefix("not.") && (body.dropFirst(4).hasPrefix("and(") || body.dropFirst(4).hasPrefix("or(")) {
                negatedItem = true
                body = body.dropFirst(4)
            }
            if body.hasPrefix("and(") {
                items.append(try parseGroup(isAnd: true, negated: negatedItem, text: String(body.dropFirst(3))))
            } else if body.hasPrefix("or(") {
                items.append(try parseGroup(isAnd: false, negated: negatedItem, text: String(body.dropFirst(2))))
            } else {
                // field.op.value where field may carry a JSON path; the first '.' outside quotes ends it.
                guard let dot = RestSplit.firstTopLevel(part, ".") else {
                    throw RestParseError(message: "failed to parse logic tree (\(text))", details: "\"\(part)\" is not column.operator.value")
                }
                let field = try FieldPath.parse(String(part[..<dot]))
                var filter = try RestFilter.parse(field: field, expression: String(part[part.index(after: dot)...]))
                if filter.op != "in" { filter.value = RestSplit.unquote(filter.value) }
                items.append(.filter(filter))
            }
        }
        guard !items.isEmpty else { throw RestParseError(message: "failed to parse logic tree (\(text))", details: "empty list") }
        return .group(isAnd: isAnd, negated: negated, items)
    }
}

/// One entry of `select=`.
indirect enum RestSelectItem {
    case star
    case field(FieldPath, alias: String?, cast: String?)
    case embed(RestEmbed)
}

/// An embedded resource: `[alias:]name[!hint][!inner](items)`.
struct RestEmbed {
    var alias: String?
    var name: String
    var hint: String?
    var inner: Bool
    var items: [RestSelectItem]
    var outputName: String { alias ?? name }
}

/// An `order=` term.
struct RestOrder {
    var field: FieldPath
    var descending: Bool
    /// `NULLS FIRST` / `NULLS LAST`, or nil for Postgres's default.
    var nulls: String?
}

enum RestSelectParser {
    /// A cast is one type name and nothing else: optionally schema-qualified, with a precision
    /// (`numeric(10,2)`) and array brackets, or one of SQL's multi-word type names. It is spliced
    /// after `::`, so no space, keyword or punctuation beyond these may pass.
    static let castPattern =
        #"^(([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}|double precision|character varying|bit varying|(timestamp|time)( ?\([0-6]\))? with(out)? time zone)( ?\([0-9]{1,4}( ?, ?[0-9]{1,4})?\))?(\[\])*\z"#

    /// Parses a `select=` list.
    static func parse(_ text: String) throws -> [RestSelectItem] {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return [.star] }
        return try RestSplit.topLevel(trimmed, separator: ",").map { try item($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    private static func item(_ text: String) throws -> RestSelectItem {
        if text == "*" { return .star }
        if text.hasPrefix("...") { throw RestParseError(message: "spread embedding (\"\(text)\") is not supported") }
        if let open = RestSplit.firstTopLevel(text, "("), text.hasSuffix(")") {
            var head = String(text[..<open])
            let inner = String(text[text.index(after: open)..<text.index(before: text.endIndex)])
            var alias: String?
            if let colon = head.firstIndex(of: ":") {
                alias = String(head[..<colon])
                head = String(head[head.index(after: colon)...])
            }
            var pieces = head.split(separator: "!", omittingEmptySubsequences: false).map(String.init)
            let name = pieces.removeFirst()
            var innerJoin = false
            var hint: String?
            for piece in pieces {
                if piece == "inner" { innerJoin = true } else if piece == "left" { innerJoin = false } else { hint = piece }
            }
            guard !name.isEmpty else { throw RestParseError(message: "failed to parse select (\(text))", details: "missing resource name before (") }
            return .embed(RestEmbed(alias: alias?.isEmpty == false ? alias : nil, name: name, hint: hint, inner: innerJoin, items: try parse(inner)))
        }
        var body = text
        var alias: String?
        // alias:column — but not the "::" of a cast.
        if let colon = firstAliasColon(body) {
            alias = String(body[..<colon])
            body = String(body[body.index(after: colon)...])
        }
        var cast: String?
        if let castRange = body.range(of: "::", options: .backwards) {
            cast = String(body[castRange.upperBound...]).trimmingCharacters(in: .whitespaces)
            body = String(body[..<castRange.lowerBound])
            guard let castText = cast, castText.range(of: castPattern, options: .regularExpression) != nil else {
                throw RestParseError(message: "failed to parse select (\(text))", details: "invalid cast \"\(cast ?? "")\"")
            }
        }
        if let alias, alias.isEmpty || alias.contains("\"") { throw RestParseError(message: "failed to parse select (\(text))", details: "invalid alias") }
        return .field(try FieldPath.parse(body), alias: alias, cast: cast)
    }

    private static func firstAliasColon(_ text: String) -> String.Index? {
        var index = text.startIndex
        var quoted = false
        while index < text.endIndex {
            let character = text[index]
            if character == "\"" { quoted.toggle() }
            if !quoted && character == ":" {
                let next = text.index(after: index)
                if next < text.endIndex && text[next] == ":" { return nil }
                return index
            }
            index = text.index(after: index)
        }
        return nil
    }

    /// Parses `order=a.desc.nullslast,b`.
    static func order(_ text: String) throws -> [RestOrder] {
        try RestSplit.topLevel(text, separator: ",").map { term in
            var parts = term.trimmingCharacters(in: .whitespaces).components(separatedBy: ".")
            var descending = false
            var nulls: String?
            while let last = parts.last, parts.count > 1, ["asc", "desc", "nullsfirst", "nullslast"].contains(last) {
                parts.removeLast()
                switch last {
                case "desc": descending = true
                case "asc": break
                case "nullsfirst": nulls = "NULLS FIRST"
                default: nulls = "NULLS LAST"
                }
            }
            let field = parts.joined(separator: ".")
            guard !field.isEmpty, !field.contains("("), parts.count == 1 || field.contains("->") else {
                throw RestParseError(message: "failed to parse order (\(text))", details: "\"\(term)\" is not column[.asc|.desc][.nullsfirst|.nullslast]")
            }
            return RestOrder(field: try FieldPath.parse(field), descending: descending, nulls: nulls)
        }
    }
}

/// Splitting that respects parentheses, braces and double quotes (a backslash inside
/// quotes escapes the next character, as in PostgREST).
enum RestSplit {
    static func topLevel(_ text: String, separator: Character) throws -> [String] {
        var parts: [String] = []
        var current = ""
        var depth = 0
        var quoted = false
        var escaped = false
        for character in text {
            if escaped {
                escaped = false
                current.append(character)
                continue
            }
            if quoted && character == "\\" {
                escaped = true
                current.append(character)
                continue
            }
            if character == "\"" { quoted.toggle() }
            if !quoted {
                if character == "(" || character == "{" { depth += 1 }
                if character == ")" || character == "}" {
                    depth -= 1
                    if depth < 0 { throw RestParseError(message: "unbalanced parentheses in \"\(text)\"") }
                }
                if character == separator && depth == 0 {
                    parts.append(current)
                    current = ""
                    continue
                }
            }
            current.append(character)
        }
        if depth != 0 || quoted { throw RestParseError(message: "unbalanced parentheses or quotes in \"\(text)\"") }
        parts.append(current)
        return parts
    }

    /// Index of the first `character` outside quotes, parentheses and braces.
    static func firstTopLevel(_ text: String, _ character: Character) -> String.Index? {
        var depth = 0
        var quoted = false
        var escaped = false
        var index = text.startIndex
        while index < text.endIndex {
            let current = text[index]
            if escaped {
                escaped = false
            } else if quoted && current == "\\" {
                escaped = true
            } else {
                if current == "\"" { quoted.toggle() }
                if !quoted {
                    if current == character && depth == 0 { return index }
                    if current == "(" || current == "{" { depth += 1 }
                    if current == ")" || current == "}" { depth -= 1 }
                }
            }
            index = text.index(after: index)
        }
        return nil
    }

    /// `"a\"b"` → `a"b`: strips surrounding quotes and resolves backslash escapes.
    static func unquote(_ text: String) -> String {
        guard text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") else { return text }
        var output = ""
        var escaped = false
        for character in text.dropFirst().dropLast() {
            if escaped {
                output.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                output.append(character)
            }
        }
        return output
    }

    /// `(a,"b,c")` or `{a,b}` as a Postgres array literal `{"a","b,c"}`.
    static func arrayLiteral(_ text: String) throws -> String {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("{") && trimmed.hasSuffix("}") { return trimmed }
        guard trimmed.hasPrefix("("), trimmed.hasSuffix(")") else {
            throw RestParseError(message: "failed to parse list (\(text))", details: "expected (a,b,c)")
        }
        let inner = String(trimmed.dropFirst().dropLast())
        if inner.trimmingCharacters(in: .whitespaces).isEmpty { return "{}" }
        let items = try topLevel(inner, separator: ",").map { item -> String in
            let value = unquote(item)
            return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        return "{" + items.joined(separator: ",") + "}"
    }
}

/// The query string split into PostgREST's parts.
struct RestQuery {
    var select: [RestSelectItem] = [.star]
    /// Conditions on the main resource, all ANDed.
    var conditions: [RestCondition] = []
    /// Conditions on embedded resources, by embed path (`author`, `author.books`).
    var embeddedConditions: [String: [RestCondition]] = [:]
    /// `embed.order=`, `embed.limit=`, `embed.offset=` by embed path.
    var embeddedOrder: [String: [RestOrder]] = [:]
    var embeddedLimit: [String: Int] = [:]
    var embeddedOffset: [String: Int] = [:]
    var order: [RestOrder] = []
    var limit: Int?
    var offset: Int?
    var onConflict: [String]?
    var columns: [String]?
    /// Parameters that are not PostgREST keywords (for GET /rpc: function arguments or filters).
    var raw: [(key: String, value: String)] = []

    static let reserved: Set<String> = ["select", "order", "limit", "offset", "on_conflict", "columns", "or", "and", "not.or", "not.and"]

    /// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, as PostgREST reads it).
    static func pairs(_ query: String) -> [(String, String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                // Most keys and values need no decoding; Foundation's replace is costly on Linux.
                guard text.utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "%") }) else { return String(text) }
                return String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(text)
            }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    /// Parses the query; `treatAsArguments` names keys that are function arguments (GET /rpc).
    static func parse(_ query: String, treatAsArguments: Set<String> = []) throws -> RestQuery {
        var result = RestQuery()
        for (key, value) in pairs(query) {
            switch key {
            case "select": result.select = try RestSelectParser.parse(value)
            case "order": result.order = try RestSelectParser.order(value)
            case "limit":
                guard let number = Int(value), number >= 0 else { throw RestParseError(message: "\"limit\" must be a non-negative integer, got \"\(value)\"") }
                result.limit = number
            case "offset":
                guard let number = Int(value), number >= 0 else { throw RestParseError(message: "\"offset\" must be a non-negative integer, got \"\(value)\"") }
                result.offset = number
            case "on_conflict": result.onConflict = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            case "columns": result.columns = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            case "or", "and", "not.or", "not.and":
                result.conditions.append(try RestCondition.parseGroup(isAnd: key.hasSuffix("and"), negated: key.hasPrefix("not."), text: value))
            default:
                if treatAsArguments.contains(key) {
                    result.raw.append((key, value))
                    continue
                }
                // `embed.column=...` filters an embedded resource; `embed.or=(...)` too.
                if let dot = key.lastIndex(of: "."), !key.contains("->"), !key.hasPrefix("\"") {
                    let path = String(key[..<dot])
                    let last = String(key[key.index(after: dot)...])
                    if last == "or" || last == "and" {
                        result.embeddedConditions[path, default: []].append(try RestCondition.parseGroup(isAnd: last == "and", negated: false, text: value))
                    } else if last == "order" {
                        result.embeddedOrder[path] = try RestSelectParser.order(value)
                    } else if last == "limit" || last == "offset" {
                        guard let number = Int(value), number >= 0 else { throw RestParseError(message: "\"\(key)\" must be a non-negative integer, got \"\(value)\"") }
                        if last == "limit" { result.embeddedLimit[path] = number } else { result.embeddedOffset[path] = number }
                    } else if last == "select" {
                        throw RestParseError(message: "\"\(key)\" is not supported", details: "select embedded columns inside select=, e.g. select=*,\(path)(col)")
                    } else {
                        result.embeddedConditions[path, default: []].append(.filter(try RestFilter.parse(field: try FieldPath.parse(last), expression: value)))
                    }
                    continue
                }
                result.conditions.append(.filter(try RestFilter.parse(field: try FieldPath.parse(key), expression: value)))
            }
        }
        return result
    }
}
