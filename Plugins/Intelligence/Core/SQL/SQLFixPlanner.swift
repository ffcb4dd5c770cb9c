import Foundation
import MeltyPostgres

/// Turns a failure into a ``SQLFixPlan`` from the catalog: nearest names in scope, function
/// candidates with casts, GROUP BY additions, corrected constants, conflict clauses, and the
/// grants or policies a denial lacks. Rewrites work on token positions only.
public struct SQLFixPlanner: Sendable {
    /// The catalog of the database the statement runs on.
    public var catalog: SQLCatalog

    /// A planner over `catalog`.
    public init(catalog: SQLCatalog) {
        self.catalog = catalog
    }

    /// The plan for `failure` of `shape`'s statement; `role` is the role the statement ran
    /// as, for denials (nil: the current user). Catalog lookups run on `connection`.
    public func plan(_ failure: SQLFailure, shape: SQLStatementShape, role: String?, on connection: PostgresConnection) async throws -> SQLFixPlan {
        switch failure.sqlState {
        case "42703": return undefinedColumn(failure, shape)
        case "42P01": return undefinedTable(failure, shape)
        case "42883": return try await undefinedFunction(failure, shape, on: connection)
        case "42803": return grouping(failure, shape)
        case "42702": return ambiguous(failure, shape)
        case "42804": return datatypeMismatch(failure, shape)
        case "22P02", "22007", "22008": return invalidInput(failure, shape)
        case "42601": return syntax(failure, shape)
        case "23505": return try await uniqueViolation(failure, shape, on: connection)
        case "23503", "23502", "23514", "23P01": return try await constraintViolation(failure, on: connection)
        case "42501": return try await denial(failure, shape, role: role, on: connection)
        case "21000": return cardinality(failure, shape)
        case "22012": return divisionByZero(failure, shape)
        default:
            return SQLFixPlan(
                category: "other", explanation: "Postgres reported \(failure.message) (SQLSTATE \(failure.sqlState)); the catalog has no specific advice for this error.")
        }
    }

    // MARK: - Names

    private func errorToken(_ failure: SQLFailure, _ shape: SQLStatementShape) -> Int? {
        failure.position.flatMap { shape.tokenIndex(atPosition: $0) }
    }

    /// The text between `prefix` and `suffix` in `message`.
    static func between(_ message: String, _ prefix: String, _ suffix: String) -> String? {
        guard let start = message.range(of: prefix) else { return nil }
        let rest = message[start.upperBound...]
        guard let end = rest.range(of: suffix) else { return String(rest) }
        return String(rest[..<end.lowerBound])
    }

    private func undefinedColumn(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var written = Self.between(failure.message, "column ", " does not exist") ?? ""
        var targetTable: String?
        if let range = written.range(of: " of relation ") {
            targetTable = FailureText.unquote(String(written[range.upperBound...]))
            written = String(written[..<range.lowerBound])
        }
        var qualifier: String?
        var missing = FailureText.unquote(written)
        if !written.hasPrefix("\""), let dot = written.lastIndex(of: ".") {
            qualifier = String(written[..<dot])
            missing = String(written[written.index(after: dot)...])
        }
        let scope = catalog.scope(of: shape)
        var plan = SQLFixPlan(category: "undefined_column", explanation: "")
        // The token to replace.
        var target: Int?
        var qualifierToken: Int?
        if let index = errorToken(failure, shape) {
            let parts = shape.chain(at: index)
            target = parts.last { shape.tokens[$0].name == missing } ?? parts.last
            if let target, let position = parts.firstIndex(of: target), position > 0 { qualifierToken = parts[position - 1] }
        }
        if target == nil { target = shape.tokens.indices.first { shape.tokens[$0].name == missing && shape.tokens[$0].isName } }
        var inScope = scope
        if let targetTable { inScope = scope.filter { $0.relation.name == targetTable } }
        if let qualifier {
            let matching = scope.filter { $0.reference.qualifier == qualifier || $0.relation.name == qualifier }
            if !matching.isEmpty { inScope = matching }
        }
        let tables = inScope.map { "\($0.relation.schema).\($0.relation.name)" }
        guard let target else {
            plan.explanation = "Column \(missing) does not exist in \(tables.isEmpty ? "the relations in scope" : tables.joined(separator: ", "))."
            return plan
        }
        let token = shape.tokens[target]
        var notes: [String] = []
        // The same name with other capitals: needs quotes (or none).
        for entry in inScope {
            for column in entry.relation.columns.map(\.name) where column.lowercased() == missing.lowercased() && column != missing {
                plan.add(
                    [SQLEdit(replacing: token, with: SQLNames.quoted(column))], to: shape,
                    reason: "the column is \(SQLNames.quoted(column)): capitals need double quotes, unquoted names are folded to lower case")
                notes.append("\(entry.relation.name) has \(SQLNames.quoted(column)) (case differs)")
            }
        }
        // The right column under another relation's qualifier.
        if let qualifierToken {
            for entry in scope where entry.relation.hasColumn(missing) && entry.reference.qualifier != qualifier {
                plan.add(
                    [SQLEdit(replacing: shape.tokens[qualifierToken], with: SQLNames.quoted(entry.reference.qualifier))], to: shape,
                    reason: "\(missing) is a column of \(entry.relation.name) (\(entry.reference.qualifier)), not of \(qualifier ?? "")")
                notes.append("\(missing) belongs to \(entry.relation.name)")
            }
        }
        let names = inScope.flatMap { $0.relation.columns.map(\.name) }
        let nearest = NameDistance.nearest(to: missing, in: names)
        for (name, _) in nearest where name != missing {
            plan.add([SQLEdit(replacing: token, with: SQLNames.quoted(name))], to: shape, reason: "\(missing) is not a column here; the nearest name is \(name)")
        }
        if !nearest.isEmpty { notes.append("nearest names: " + nearest.map(\.name).joined(separator: ", ")) }
        // "value" in double quotes is an identifier; a string constant takes single quotes.
        if token.kind == .quotedIdentifier {
            plan.add([SQLEdit(replacing: token, with: SQL.literal(missing))], to: shape, reason: "double quotes name a column; a text value takes single quotes")
            notes.append("\"\(missing)\" in double quotes is read as a column name; text values take single quotes")
        }
        plan.explanation =
            "Column \(missing) does not exist in \(tables.isEmpty ? "the relations in scope" : tables.joined(separator: ", "))"
            + (notes.isEmpty ? "." : "; " + notes.joined(separator: "; ") + ".")
        return plan
    }

    private func undefinedTable(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var plan = SQLFixPlan(category: "undefined_table", explanation: "")
        let quoted = failure.quotedNames.first ?? ""
        if failure.message.hasPrefix("missing FROM-clause entry") {
            let qualifiers = shape.relations.map(\.qualifier)
            plan.explanation = "\(quoted) qualifies a column but no relation in FROM is called that; in scope: \(qualifiers.joined(separator: ", "))."
            if let index = errorToken(failure, shape), shape.tokens[index].name == quoted {
                for (name, _) in NameDistance.nearest(to: quoted, in: qualifiers) {
                    plan.add(
                        [SQLEdit(replacing: shape.tokens[index], with: SQLNames.quoted(name))], to: shape,
                        reason: "\(quoted) is not in FROM; the nearest relation or alias is \(name)")
                }
            }
            return plan
        }
        var schema: String?
        var missing = quoted
        if let dot = quoted.firstIndex(of: ".") {
            schema = String(quoted[..<dot])
            missing = String(quoted[quoted.index(after: dot)...])
        }
        var parts: [Int] = []
        if let index = errorToken(failure, shape) { parts = shape.chain(at: index) }
        if parts.isEmpty, let index = shape.tokens.indices.first(where: { shape.tokens[$0].name == missing }) { parts = [index] }
        var found: [SQLCatalog.Relation] = []
        for relation in catalog.relations where relation.name == missing || relation.name.lowercased() == missing.lowercased() {
            found.append(relation)
        }
        for (name, _) in NameDistance.nearest(to: missing, in: catalog.relations.map(\.name), limit: 4) {
            for relation in catalog.relations where relation.name == name && !found.contains(relation) { found.append(relation) }
        }
        var notes: [String] = []
        if let first = parts.first, let last = parts.last {
            let reference = shape.relations.first { $0.tokenIndex == first }
            for relation in found.prefix(5) {
                let needsSchema = !catalog.onPath(relation.schema) || schema != nil || catalog.resolve(schema: nil, name: relation.name) != relation
                let replacement = needsSchema ? SQLNames.qualified(relation.schema, relation.name) : SQLNames.quoted(relation.name)
                var edits = [SQLEdit(start: shape.tokens[first].start, end: shape.tokens[last].end, replacement: replacement)]
                // Columns qualified by the old name follow the new one (no alias).
                if let reference, reference.alias == nil {
                    for (index, token) in shape.tokens.enumerated()
                    where index != first && token.name == missing && index + 1 < shape.tokens.count && shape.tokens[index + 1].text == "."
                        && (index == 0 || shape.tokens[index - 1].text != ".")
                    {
                        edits.append(SQLEdit(replacing: token, with: SQLNames.quoted(relation.name)))
                    }
                }
                let why: String
                if relation.name == missing && !catalog.onPath(relation.schema) {
                    why = "\(missing) is in schema \(relation.schema), which is not on the search path (\(catalog.searchPath.joined(separator: ", ")))"
                } else if relation.name.lowercased() == missing.lowercased() {
                    why = "the relation is \(SQLNames.quoted(relation.name)): capitals need double quotes"
                } else {
                    why = "\(quoted) does not exist; the nearest relation is \(relation.schema).\(relation.name)"
                }
                plan.add(edits, to: shape, reason: why)
                notes.append(why)
            }
        }
        plan.explanation =
            "Relation \(quoted) does not exist on the search path (\(catalog.searchPath.joined(separator: ", ")))"
            + (notes.isEmpty ? "." : "; " + notes.joined(separator: "; ") + ".")
        return plan
    }

    // MARK: - Functions and operators

    private struct FunctionSignature {
        var name: String
        var schema: String
        var visible: Bool
        var arguments: [String]
        var variadic: Bool
    }

    private static let polymorphic: Set<String> = [
        "anyelement", "anyarray", "anynonarray", "anyenum", "anyrange", "anymultirange", "anycompatible", "anycompatiblearray", "anycompatiblenonarray",
        "anycompatiblerange", "\"any\"", "any",
    ]

    private func functions(on connection: PostgresConnection) async throws -> [FunctionSignature] {
        try await connection.query(
            """
            SELECT p.proname, n.nspname, pg_function_is_visible(p.oid),
                   coalesce((SELECT string_agg(format_type(t, NULL), chr(1) ORDER BY o) FROM unnest(p.proargtypes) WITH ORDINALITY u(t, o)), ''),
                   p.provariadic <> 0
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE p.prokind IN ('f', 'a', 'w') AND n.nspname = ANY (current_schemas(true)) AND has_function_privilege(p.oid, 'EXECUTE')
            LIMIT 20000
            """
        ).rows.map { row in
            FunctionSignature(
                name: row[0] ?? "", schema: row[1] ?? "", visible: row[2] == "t",
                arguments: (row[3] ?? "").isEmpty ? [] : (row[3] ?? "").split(separator: "\u{1}").map(String.init), variadic: row[4] == "t")
        }
    }

    /// `text` of `range` cast to `type`.
    private func cast(_ shape: SQLStatementShape, _ range: ClosedRange<Int>, to type: String) -> SQLEdit {
        // An operand already cast (`x::float`) gets the other type instead of a second cast.
        if range.count >= 3, shape.tokens[range.upperBound - 1].text == "::", shape.tokens[range.upperBound].isName {
            return SQLEdit(start: shape.tokens[range.upperBound - 1].start, end: shape.tokens[range.upperBound].end, replacement: "::" + type)
        }
        let text = shape.text(range)
        let simple = range.count == 1 || shape.tokens[range.lowerBound].text == "("
        let start = shape.tokens[range.lowerBound].start
        let end = shape.tokens[range.upperBound].end
        return SQLEdit(start: start, end: end, replacement: (simple ? text : "(" + text + ")") + "::" + type)
    }

    private func undefinedFunction(_ failure: SQLFailure, _ shape: SQLStatementShape, on connection: PostgresConnection) async throws -> SQLFixPlan {
        if failure.message.hasPrefix("operator does not exist: ") { return operatorMismatch(failure, shape) }
        var plan = SQLFixPlan(category: "undefined_function", explanation: "")
        let signature = Self.between(failure.message, "function ", " does not exist") ?? ""
        let open = signature.firstIndex(of: "(") ?? signature.endIndex
        var name = String(signature[..<open])
        if let dot = name.lastIndex(of: ".") { name = String(name[name.index(after: dot)...]) }
        name = FailureText.unquote(name)
        let given: [String] = {
            guard open < signature.endIndex else { return [] }
            let inner = signature[signature.index(after: open)...].dropLast()
            return inner.isEmpty ? [] : FailureText.splitTopLevel(String(inner))
        }()
        guard let index = errorToken(failure, shape) else {
            plan.explanation = "No function \(signature) exists."
            return plan
        }
        let parts = shape.chain(at: index)
        guard let nameIndex = parts.last, nameIndex + 1 < shape.tokens.count, shape.tokens[nameIndex + 1].text == "(", let close = shape.matchingClose(nameIndex + 1) else {
            plan.explanation = "No function \(signature) exists."
            return plan
        }
        // The argument ranges: top-level commas between the parentheses.
        var arguments: [ClosedRange<Int>] = []
        var argumentStart = nameIndex + 2
        let depth = shape.depths[nameIndex + 1] + 1
        var cursor = nameIndex + 2
        while cursor <= close {
            if cursor == close || (shape.tokens[cursor].text == "," && shape.depths[cursor] == depth) {
                if cursor > argumentStart { arguments.append(argumentStart...(cursor - 1)) }
                argumentStart = cursor + 1
            }
            cursor += 1
        }
        let all = try await functions(on: connection)
        let names = Array(Set(all.filter(\.visible).map(\.name))).sorted()
        var nearest = NameDistance.nearest(to: name, in: names, limit: 3).map(\.name)
        if names.contains(name) { nearest.insert(name, at: 0) }
        var seenNames: [String] = []
        var options: [(edits: [SQLEdit], reason: String, casts: Int, distance: Int)] = []
        for candidate in nearest where !seenNames.contains(candidate) {
            seenNames.append(candidate)
            let distance = NameDistance.levenshtein(candidate, name)
            for overload in all where overload.name == candidate && overload.visible && overload.arguments.count == arguments.count {
                var edits: [SQLEdit] = []
                if candidate != name { edits.append(SQLEdit(replacing: shape.tokens[nameIndex], with: SQLNames.quoted(candidate))) }
                var casts: [String] = []
                for (position, parameter) in overload.arguments.enumerated() where position < given.count {
                    let type = given[position]
                    if type == parameter || type == "unknown" || Self.polymorphic.contains(parameter) { continue }
                    edits.append(cast(shape, arguments[position], to: parameter))
                    casts.append("argument \(position + 1) \(type) → \(parameter)")
                }
                let reason =
                    (candidate != name
                        ? "\(name) does not exist; \(candidate)(\(overload.arguments.joined(separator: ", "))) does"
                        : "\(candidate) takes (\(overload.arguments.joined(separator: ", ")))")
                    + (casts.isEmpty ? "" : "; cast " + casts.joined(separator: ", "))
                options.append((edits, reason, casts.count, distance))
            }
        }
        options.sort { ($0.distance, $0.casts) < ($1.distance, $1.casts) }
        for option in options.prefix(6) where !option.edits.isEmpty { plan.add(option.edits, to: shape, reason: option.reason) }
        let overloads = all.filter { $0.name == name }.prefix(5).map { "\($0.name)(\($0.arguments.joined(separator: ", ")))" }
        plan.explanation =
            "No function \(signature) exists"
            + (overloads.isEmpty
                ? (nearest.isEmpty ? "." : "; functions with similar names: " + nearest.joined(separator: ", ") + ".")
                : "; the candidates are " + overloads.joined(separator: ", ") + " (the arguments need casts).")
        return plan
    }

    private func operatorMismatch(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var plan = SQLFixPlan(category: "undefined_function", explanation: "No operator \(failure.message.dropFirst("operator does not exist: ".count)) exists.")
        guard let index = errorToken(failure, shape), shape.tokens[index].kind == .symbol || shape.tokens[index].kind == .word else { return plan }
        let symbol = shape.tokens[index].text
        let operands = String(failure.message.dropFirst("operator does not exist: ".count))
        guard
            let range = operands.range(of: " \(failure.message.contains(" ~~ ") && symbol.lowercased() == "like" ? "~~" : symbol) ") ?? operands.range(of: " ~~ ")
                ?? operands.range(of: " ~~* ")
        else { return plan }
        let leftType = String(operands[..<range.lowerBound])
        let rightType = String(operands[range.upperBound...])
        let left = shape.operandEnding(at: index - 1)
        let right = shape.operandStarting(at: index + 1)
        let rightIsConstant = right.map { shape.tokens[$0.lowerBound].kind == .string || shape.tokens[$0.lowerBound].kind == .number } ?? false
        var options: [(SQLEdit, String)] = []
        if let right, rightType != "unknown", leftType != "unknown" {
            options.append((cast(shape, right, to: leftType), "compare as \(leftType): cast the right side (\(rightType)) to \(leftType)"))
        }
        if let left {
            let type = rightType == "unknown" ? "text" : rightType
            options.append((cast(shape, left, to: type), "compare as \(type): cast the left side (\(leftType)) to \(type)"))
        }
        if !rightIsConstant { options.reverse() }
        for (edit, reason) in options { plan.add([edit], to: shape, reason: reason) }
        plan.explanation = "\(leftType) and \(rightType) cannot be compared with \(symbol) without a cast."
        return plan
    }

    // MARK: - Grouping, ambiguity, types

    private func levelStart(_ shape: SQLStatementShape, _ index: Int) -> Int {
        let depth = shape.depths[index]
        var cursor = index
        while cursor > 0, shape.depths[cursor - 1] >= depth { cursor -= 1 }
        return cursor
    }

    private static let afterGroupBy: Set<String> = ["having", "order", "limit", "offset", "window", "union", "intersect", "except", "fetch", "for"]

    private func grouping(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var plan = SQLFixPlan(category: "grouping_error", explanation: failure.message + ".")
        guard failure.message.contains("GROUP BY"), let index = errorToken(failure, shape), let parts = Optional(shape.chain(at: index)), let last = parts.last else {
            if failure.message.contains("not allowed in WHERE") { plan.explanation = "Aggregates cannot filter rows in WHERE; move that condition to HAVING (after GROUP BY)." }
            return plan
        }
        let column = shape.text(index...last)
        let depth = shape.depths[index]
        let start = levelStart(shape, index)
        if let group = shape.firstKeyword(["group"], from: start, depth: depth), group + 1 < shape.tokens.count, shape.tokens[group + 1].isKeyword("by") {
            let end = shape.firstKeyword(Self.afterGroupBy, from: group + 2, depth: depth) ?? shape.levelEnd(containing: group).tokenIndex
            plan.add(
                [.insert(", " + column, at: shape.tokens[end - 1].end)], to: shape,
                reason: "add \(column) to GROUP BY: every selected column that is not aggregated must be grouped")
        } else if let before = shape.firstKeyword(Self.afterGroupBy, from: max(start, shape.firstKeyword(["from"], from: start, depth: depth) ?? start), depth: depth) {
            plan.add([.insert("GROUP BY " + column + " ", at: shape.tokens[before].start)], to: shape, reason: "group by \(column): it is selected next to an aggregate")
        } else {
            let end = shape.levelEnd(containing: index).tokenIndex
            plan.add([.insert(" GROUP BY " + column, at: shape.tokens[end - 1].end)], to: shape, reason: "group by \(column): it is selected next to an aggregate")
        }
        plan.explanation = "\(column) is selected (or ordered by) next to an aggregate but is not in GROUP BY; group by it or aggregate it."
        return plan
    }

    private func ambiguous(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        let name = failure.quotedNames.first ?? ""
        let owners = catalog.scope(of: shape).filter { $0.relation.hasColumn(name) }
        var plan = SQLFixPlan(
            category: "ambiguous_column",
            explanation: "Column \(name) exists in more than one relation in scope (\(owners.map { $0.relation.name }.joined(separator: ", "))); qualify it.")
        guard let index = errorToken(failure, shape), shape.tokens[index].name == name else { return plan }
        for owner in owners {
            plan.add(
                [SQLEdit(replacing: shape.tokens[index], with: SQLNames.quoted(owner.reference.qualifier) + "." + shape.tokens[index].text)], to: shape,
                reason: "take \(name) from \(owner.relation.name)")
        }
        return plan
    }

    private func datatypeMismatch(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var plan = SQLFixPlan(category: "datatype_mismatch", explanation: failure.message + ".")
        guard let type = Self.between(failure.message, " is of type ", " but expression"), let index = errorToken(failure, shape),
            let range = shape.operandStarting(at: index)
        else { return plan }
        plan.explanation = failure.message + "; the value needs a cast to \(type)."
        plan.add([cast(shape, range, to: type)], to: shape, reason: "cast the value to \(type), the column's type")
        return plan
    }

    // MARK: - Constants

    private func invalidInput(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var value = ""
        if let colon = failure.message.range(of: ": \"") {
            value = String(failure.message[colon.upperBound...])
            if value.hasSuffix("\"") { value.removeLast() }
        }
        var type = Self.between(failure.message, "for type ", ":") ?? ""
        if failure.sqlState == "22008" || failure.message.hasPrefix("date/time") { type = "date" }
        var plan = SQLFixPlan(
            category: "invalid_input",
            explanation: "\"\(value)\" is not a valid \(type.isEmpty ? "value" : type)" + (failure.hint.map { "; " + $0 } ?? "") + ".")
        var literal: Int?
        if let index = errorToken(failure, shape), shape.tokens[index].kind == .string { literal = index }
        if literal == nil { literal = shape.tokens.indices.first { shape.tokens[$0].kind == .string && FailureText.stringValue(shape.tokens[$0].text) == value } }
        guard let literal else { return plan }
        let token = shape.tokens[literal]
        for (replacement, reason) in FailureText.corrections(of: value, type: type) {
            plan.add([SQLEdit(replacing: token, with: replacement)], to: shape, reason: reason)
        }
        if let example = FailureText.example(for: type) { plan.explanation += " A \(type) looks like \(example)." }
        return plan
    }

    private static let keywords = [
        "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "HAVING", "LIMIT", "OFFSET", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "ON", "AND", "OR", "NOT",
        "NULL", "IS", "IN", "LIKE", "ILIKE", "BETWEEN", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE", "RETURNING", "DISTINCT", "CASE", "WHEN",
        "THEN", "ELSE", "END", "UNION", "EXISTS", "DESC", "WITH", "CROSS", "USING",
    ]

    private func syntax(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var plan = SQLFixPlan(category: "syntax_error", explanation: failure.message + ".")
        let atEnd = failure.message.hasSuffix("at end of input")
        guard !shape.tokens.isEmpty else { return plan }
        let index = atEnd ? shape.tokens.count : (errorToken(failure, shape) ?? shape.tokens.count)
        // A misspelt keyword at the error or just before it.
        for candidate in [index, index - 1, index - 2] where candidate >= 0 && candidate < shape.tokens.count {
            let token = shape.tokens[candidate]
            guard token.kind == .word, token.text.count >= 3, !Self.keywords.contains(token.text.uppercased()) else { continue }
            if let keyword = NameDistance.nearest(to: token.text.uppercased(), in: Self.keywords, limit: 1).first, keyword.distance <= 2 {
                plan.add([SQLEdit(replacing: token, with: keyword.name)], to: shape, reason: "\(token.text) looks like a misspelt \(keyword.name)")
                plan.explanation = failure.message + "; \(token.text) looks like the keyword \(keyword.name)."
            }
        }
        if index < shape.tokens.count {
            let token = shape.tokens[index]
            // A comma before a clause keyword.
            if index > 0, shape.tokens[index - 1].text == ",", token.kind == .word {
                plan.add([SQLEdit(replacing: shape.tokens[index - 1], with: "")], to: shape, reason: "remove the comma before \(token.text.uppercased())")
                plan.explanation = failure.message + "; a list ends with a comma before \(token.text.uppercased())."
            }
            // Two names in a row in a select list: a missing comma.
            if index > 0, token.isName, [.word, .quotedIdentifier, .number, .string].contains(shape.tokens[index - 1].kind) || shape.tokens[index - 1].text == ")" {
                plan.add([.insert(",", at: shape.tokens[index - 1].end)], to: shape, reason: "a comma is missing before \(token.text)")
            }
        } else if let last = shape.tokens.last {
            let opens = shape.tokens.filter { $0.text == "(" && $0.kind == .punctuation }.count
            let closes = shape.tokens.filter { $0.text == ")" && $0.kind == .punctuation }.count
            if opens > closes {
                plan.add([.insert(String(repeating: ")", count: opens - closes), at: last.end)], to: shape, reason: "close the \(opens - closes) open parenthesis")
                plan.explanation = failure.message + "; \(opens - closes) parenthesis is not closed."
            }
            if last.text == "," || ["and", "or", "where"].contains(last.text.lowercased()) {
                plan.add([SQLEdit(replacing: last, with: "")], to: shape, reason: "the statement ends with \(last.text)")
            }
        }
        return plan
    }

    // MARK: - Execution errors

    private func uniqueViolation(_ failure: SQLFailure, _ shape: SQLStatementShape, on connection: PostgresConnection) async throws -> SQLFixPlan {
        let constraint = failure.constraint ?? failure.quotedNames.first ?? ""
        var columns = failure.key?.columns ?? []
        if columns.isEmpty, !constraint.isEmpty {
            columns = try await connection.query(
                """
                SELECT a.attname FROM pg_constraint c JOIN unnest(c.conkey) WITH ORDINALITY k(n, o) ON true
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                WHERE c.conname = $1 ORDER BY k.o
                """, [constraint]
            ).rows.compactMap { $0.first ?? nil }
        }
        var plan = SQLFixPlan(
            category: "unique_violation",
            explanation:
                "A row with \(failure.key.map { "(\($0.columns.joined(separator: ", ")))=(\($0.values))" } ?? "the same key") already exists: constraint \(constraint) allows one row per \(columns.joined(separator: ", "))."
        )
        guard shape.leadingKeyword == "insert", !columns.isEmpty, !shape.tokens.contains(where: { $0.isKeyword("conflict") }),
            let reference = shape.relations.first, let last = shape.tokens.last
        else { return plan }
        let offset: Int = {
            if let returning = shape.firstKeyword(["returning"], from: 0, depth: 0) { return shape.tokens[returning].start }
            return last.text == ";" ? last.start : last.end
        }()
        let target = columns.map(SQLNames.quoted).joined(separator: ", ")
        plan.add([.insert(" ON CONFLICT (\(target)) DO NOTHING ", at: offset)], to: shape, reason: "skip rows whose \(columns.joined(separator: ", ")) already exists")
        // The inserted columns: the column list after the relation, or all of the table's.
        var inserted: [String] = []
        var cursor = reference.tokenIndex + 1
        while cursor < shape.tokens.count, shape.tokens[cursor].text != "(", !shape.tokens[cursor].isKeyword("values"), !shape.tokens[cursor].isKeyword("select") { cursor += 1 }
        if cursor < shape.tokens.count, shape.tokens[cursor].text == "(", let close = shape.matchingClose(cursor) {
            inserted = shape.tokens[(cursor + 1)..<close].compactMap { $0.isName ? $0.name : nil }
        } else if let relation = catalog.resolve(schema: reference.schema, name: reference.name) {
            inserted = relation.columns.map(\.name)
        }
        let updates = inserted.filter { !columns.contains($0) }
        if !updates.isEmpty {
            let assignments = updates.map { "\(SQLNames.quoted($0)) = EXCLUDED.\(SQLNames.quoted($0))" }.joined(separator: ", ")
            plan.add([.insert(" ON CONFLICT (\(target)) DO UPDATE SET \(assignments) ", at: offset)], to: shape, reason: "update the existing row instead (an upsert)")
        }
        return plan
    }

    private func constraintViolation(_ failure: SQLFailure, on connection: PostgresConnection) async throws -> SQLFixPlan {
        let category = ["23503": "foreign_key_violation", "23502": "not_null_violation", "23514": "check_violation", "23P01": "exclusion_violation"][failure.sqlState] ?? "other"
        let names = failure.quotedNames
        let constraint = failure.constraint ?? (failure.sqlState == "23502" ? nil : names.last { !$0.isEmpty && $0 != names.first } ?? names.last)
        var explanation = failure.message + (failure.detail.map { " (" + $0 + ")" } ?? "")
        if let constraint, failure.sqlState != "23502" {
            let definition = try await connection.query(
                "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1 LIMIT 1", [constraint]
            ).rows.first
            if let definition, let table = definition[0], let text = definition[1] { explanation += ". Constraint \(constraint) on \(table): \(text)" }
        }
        switch failure.sqlState {
        case "23503":
            explanation +=
                failure.detail?.contains("is still referenced") == true
                ? ". Delete or re-point the referencing rows first, or declare the foreign key ON DELETE CASCADE / SET NULL."
                : ". Insert the referenced row first, or use a key that exists."
        case "23502":
            explanation += ". Give the column a value, or a DEFAULT."
        default:
            explanation += "."
        }
        return SQLFixPlan(category: category, explanation: explanation)
    }

    private func denial(_ failure: SQLFailure, _ shape: SQLStatementShape, role: String?, on connection: PostgresConnection) async throws -> SQLFixPlan {
        let who = role ?? "the current role"
        let grantee = role ?? "<role>"
        if failure.message.contains("row-level security") {
            let table = failure.quotedNames.last ?? ""
            let command = (shape.leadingKeyword ?? "select").uppercased()
            let policies = try await connection.query(
                "SELECT policyname, cmd, array_to_string(roles, ', '), coalesce(qual, ''), coalesce(with_check, '') FROM pg_policies WHERE tablename = $1 ORDER BY policyname",
                [table]
            ).rows
            let applicable = policies.filter { ($0[1] ?? "") == command || ($0[1] ?? "") == "ALL" }
            var explanation = "Row-level security on \(table) refused the row for \(who)."
            var remedies: [String] = []
            if applicable.isEmpty {
                explanation += " No \(command) policy exists on \(table)" + (policies.isEmpty ? " (the table has no policies: RLS then denies everything)." : ".")
                let check = command == "INSERT" ? "WITH CHECK" : "USING"
                remedies.append(
                    "CREATE POLICY \(SQLNames.quoted(table + "_" + command.lowercased())) ON \(SQLNames.quoted(table)) FOR \(command) TO \(grantee) \(check) (<condition>);")
            } else {
                let list = applicable.map { "\($0[0] ?? "") (\($0[1] ?? ""), to \($0[2] ?? ""): using \($0[3] ?? "-"), with check \($0[4] ?? "-"))" }
                explanation += " Policies for \(command): " + list.joined(separator: "; ") + ". The new or updated row does not satisfy their WITH CHECK expression."
            }
            return SQLFixPlan(category: "rls_denied", explanation: explanation, remedies: remedies)
        }
        let quoted = failure.message.components(separatedBy: " for ").last ?? ""
        let parts = quoted.split(separator: " ", maxSplits: 1).map(String.init)
        let kind = parts.first ?? ""
        let object = parts.count > 1 ? parts[1] : ""
        var explanation = "\(who.prefix(1).uppercased() + who.dropFirst()) lacks a privilege: \(failure.message)."
        var remedies: [String] = []
        switch kind {
        case "table", "view", "relation":
            let command = (shape.leadingKeyword ?? "select").uppercased()
            let privilege = ["INSERT", "UPDATE", "DELETE"].contains(command) ? command : "SELECT"
            if let role {
                let rows = try await connection.query(
                    """
                    SELECT p, has_table_privilege($1, c.oid, p) FROM pg_class c, unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE']) p
                    WHERE c.oid = to_regclass($2)
                    """, [role, object]
                ).rows
                let held = rows.filter { $0[1] == "t" }.compactMap { $0[0] ?? nil }
                explanation += " \(role) holds \(held.isEmpty ? "no privileges" : held.joined(separator: ", ")) on \(object)."
            }
            remedies.append("GRANT \(privilege) ON \(object) TO \(grantee);")
        case "schema":
            remedies.append("GRANT USAGE ON SCHEMA \(object) TO \(grantee);")
        case "function":
            remedies.append("GRANT EXECUTE ON FUNCTION \(object) TO \(grantee);")
        case "sequence":
            remedies.append("GRANT USAGE ON SEQUENCE \(object) TO \(grantee);")
        default:
            break
        }
        return SQLFixPlan(category: "permission_denied", explanation: explanation, remedies: remedies)
    }

    private func cardinality(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var plan = SQLFixPlan(
            category: "cardinality_violation", explanation: failure.message + "; a subquery compared with = must return one row: use IN, or make it return one row.")
        var edits: [SQLEdit] = []
        for (index, token) in shape.tokens.enumerated() where token.kind == .symbol && index + 2 < shape.tokens.count {
            guard shape.tokens[index + 1].text == "(", shape.tokens[index + 2].isKeyword("select") else { continue }
            if token.text == "=" { edits.append(SQLEdit(replacing: token, with: "IN")) }
            if token.text == "<>" || token.text == "!=" { edits.append(SQLEdit(replacing: token, with: "NOT IN")) }
        }
        if !edits.isEmpty { plan.add(edits, to: shape, reason: "the subquery returns several rows: compare with IN") }
        return plan
    }

    private func divisionByZero(_ failure: SQLFailure, _ shape: SQLStatementShape) -> SQLFixPlan {
        var plan = SQLFixPlan(category: "division_by_zero", explanation: "A divisor is zero in some row; NULLIF(divisor, 0) gives NULL there instead.")
        var edits: [SQLEdit] = []
        for (index, token) in shape.tokens.enumerated() where token.kind == .symbol && token.text == "/" {
            guard let range = shape.operandStarting(at: index + 1), shape.tokens[range.lowerBound].kind != .number else { continue }
            edits.append(
                SQLEdit(start: shape.tokens[range.lowerBound].start, end: shape.tokens[range.upperBound].end, replacement: "NULLIF(" + shape.text(range) + ", 0)"))
        }
        if !edits.isEmpty { plan.add(edits, to: shape, reason: "divide by NULLIF(divisor, 0): NULL instead of an error where it is zero") }
        return plan
    }
}
