import Foundation
import MeltyPostgres
import PortalDatabaseCore

/// A relationship error: 400 `PGRST200` (none) or 300 `PGRST201` (ambiguous), as PostgREST.
struct RelationshipError: Error {
    var ambiguous: Bool
    var message: String
    var hint: String?
}

/// Builds the SQL of one REST request. Every value is a bound parameter (`$n`, of unknown
/// type so Postgres infers it from its use, as PostgREST does); every identifier is quoted.
struct RestSQL {
    let cache: SchemaCache
    private(set) var parameters: [String?] = []
    private var aliasCounter = 0

    init(cache: SchemaCache) { self.cache = cache }

    mutating func bind(_ value: String?) -> String {
        parameters.append(value)
        return "$\(parameters.count)"
    }

    /// The alias of the request's own table: its name, as in PostgREST's statements (so plans
    /// read `countries.id`), unless the name could clash with the generated ones.
    static func rootAlias(_ table: SchemaCache.Table) -> String {
        table.name.hasPrefix("_") || table.name.utf8.count > 60 ? "t0" : table.name
    }

    /// A fresh alias for an embedded `table`: `<name>_<n>` as PostgREST's (`cities_1`); names
    /// too long for Postgres' 63-byte identifiers, or starting with `_`, get `_t<n>`. An alias
    /// ends in its unique number after its last `_`, so two never clash, nor with a root alias.
    mutating func nextAlias(for table: SchemaCache.Table, avoiding root: String) -> String {
        while true {
            aliasCounter += 1
            let named = table.name + "_" + String(aliasCounter)
            let alias = table.name.hasPrefix("_") || named.utf8.count > 63 ? "_t" + String(aliasCounter) : named
            if alias != root { return alias }
        }
    }

    /// The root alias of the statement being built (embeds never take it).
    var root = "t0"

    // MARK: conditions

    mutating func conditions(_ list: [RestCondition], on alias: String) throws -> String {
        try list.map { try condition($0, on: alias) }.joined(separator: " AND ")
    }

    mutating func condition(_ condition: RestCondition, on alias: String) throws -> String {
        switch condition {
        case .filter(let filter): return try self.filter(filter, on: alias)
        case .group(let isAnd, let negated, let items):
            let joined = try items.map { try self.condition($0, on: alias) }.joined(separator: isAnd ? " AND " : " OR ")
            return (negated ? "NOT " : "") + "(" + joined + ")"
        }
    }

    mutating func filter(_ filter: RestFilter, on alias: String) throws -> String {
        let column = filter.field.sql(on: alias)
        var expression: String
        switch filter.op {
        case "in":
            expression = column + " = ANY(" + bind(try RestSplit.arrayLiteral(filter.value)) + ")"
        case "is":
            switch filter.value.lowercased() {
            case "null": expression = column + " IS NULL"
            case "not_null": expression = column + " IS NOT NULL"
            case "true": expression = column + " IS TRUE"
            case "false": expression = column + " IS FALSE"
            case "unknown": expression = column + " IS UNKNOWN"
            default: throw RestParseError(message: "failed to parse filter (is.\(filter.value))", details: "is accepts null, not_null, true, false or unknown")
            }
        case "isdistinct":
            expression = column + " IS DISTINCT FROM " + bind(filter.value)
        case let op where RestFilter.textSearch[op] != nil:
            let function = RestFilter.textSearch[op] ?? "to_tsquery"
            if let config = filter.modifier {
                expression = column + " @@ " + function + "(" + bind(config) + "::regconfig, " + bind(filter.value) + ")"
            } else {
                expression = column + " @@ " + function + "(" + bind(filter.value) + ")"
            }
        default:
            guard let sqlOperator = RestFilter.operators[filter.op] else {
                throw RestParseError(message: "failed to parse filter (\(filter.op).\(filter.value))", details: "unknown operator \"\(filter.op)\"")
            }
            var value = filter.value
            if filter.op == "like" || filter.op == "ilike" { value = value.replacingOccurrences(of: "*", with: "%") }
            if let modifier = filter.modifier {
                var list = try RestSplit.arrayLiteral(value)
                if filter.op == "like" || filter.op == "ilike" { list = list.replacingOccurrences(of: "*", with: "%") }
                expression = column + " " + sqlOperator + " " + modifier.uppercased() + "(" + bind(list) + ")"
            } else {
                if filter.op == "ov", value.hasPrefix("(") { value = try RestSplit.arrayLiteral(value) }
                expression = column + " " + sqlOperator + " " + bind(value)
            }
        }
        return filter.negated ? "NOT (" + expression + ")" : expression
    }

    // MARK: select lists and embedding

    /// The select list for `table` under `alias`, with embedded subqueries.
    mutating func selectList(
        _ items: [RestSelectItem], table: SchemaCache.Table, alias: String,
        embeds: RestQuery, path: String = "", innerJoins: inout [String]
    ) throws -> String {
        var parts: [String] = []
        for item in items {
            switch item {
            case .star:
                parts.append(SQL.ident(alias) + ".*")
            case .field(let field, let fieldAlias, let cast):
                var expression = field.sql(on: alias)
                if let cast { expression = "(" + expression + ")::" + cast }
                parts.append(expression + " AS " + SQL.ident(fieldAlias ?? field.defaultAlias))
            case .embed(let embed):
                let (subquery, isInner) = try embedded(
                    embed, parent: table, parentAlias: alias, embeds: embeds,
                    path: path.isEmpty ? embed.outputName : path + "." + embed.outputName)
                parts.append(subquery + " AS " + SQL.ident(embed.outputName))
                if isInner { innerJoins.append(subquery) }
            }
        }
        return parts.isEmpty ? SQL.ident(alias) + ".*" : parts.joined(separator: ", ")
    }

    /// The relationship `embed` names from `parent`: (kind, target table, join SQL builder).
    private enum Relationship {
        case manyToOne(SchemaCache.ForeignKey)  // parent.fk -> target
        case oneToMany(SchemaCache.ForeignKey)  // target.fk -> parent
        case manyToMany(junction: SchemaCache.Table, toParent: SchemaCache.ForeignKey, toTarget: SchemaCache.ForeignKey)
    }

    private func relationship(_ embed: RestEmbed, parent: SchemaCache.Table) throws -> (SchemaCache.Table, Relationship) {
        let keys = cache.foreignKeys
        var candidates: [(SchemaCache.Table, Relationship)] = []
        func matchesHint(_ key: SchemaCache.ForeignKey, columnsOn side: [String]) -> Bool {
            guard let hint = embed.hint else { return true }
            return key.name == hint || side == [hint] || key.table == hint || key.foreignTable == hint
        }
        if let target = cache.table(parent.schema, embed.name) {
            for key in keys
            where key.schema == parent.schema && key.table == parent.name && key.foreignTable == target.name && key.foreignSchema == target.schema
                && matchesHint(key, columnsOn: key.columns)
            {
                candidates.append((target, .manyToOne(key)))
            }
            for key in keys
            where key.schema == target.schema && key.table == target.name && key.foreignTable == parent.name && key.foreignSchema == parent.schema
                && matchesHint(key, columnsOn: key.columns)
            {
                if target.name == parent.name, candidates.contains(where: { if case .manyToOne(let other) = $0.1 { other.name == key.name } else { false } }) { continue }
                candidates.append((target, .oneToMany(key)))
            }
            if candidates.isEmpty {
                // Junction tables: one foreign key to the parent and one to the target.
                for junction in cache.tables.values where junction.schema == parent.schema {
                    let toParent = keys.filter { $0.schema == junction.schema && $0.table == junction.name && $0.foreignTable == parent.name && $0.foreignSchema == parent.schema }
                    let toTarget = keys.filter { $0.schema == junction.schema && $0.table == junction.name && $0.foreignTable == target.name && $0.foreignSchema == target.schema }
                    for left in toParent {
                        for right in toTarget where left.name != right.name {
                            if let hint = embed.hint, hint != junction.name { continue }
                            candidates.append((target, .manyToMany(junction: junction, toParent: left, toTarget: right)))
                        }
                    }
                }
            }
        } else {
            // The name may be a foreign-key column or constraint of the parent (`author_id(name)`).
            for key in keys where key.schema == parent.schema && key.table == parent.name && (key.columns == [embed.name] || key.name == embed.name) {
                if let target = cache.table(key.foreignSchema, key.foreignTable) { candidates.append((target, .manyToOne(key))) }
            }
        }
        if candidates.isEmpty {
            throw RelationshipError(
                ambiguous: false,
                message: "Could not find a relationship between '\(parent.name)' and '\(embed.name)' in the schema cache",
                hint: cache.table(parent.schema, embed.name) == nil ? "'\(embed.name)' is not a table or foreign key of '\(parent.name)'" : "add a foreign key between them")
        }
        if candidates.count > 1 {
            throw RelationshipError(
                ambiguous: true,
                message: "Could not embed because more than one relationship was found for '\(parent.name)' and '\(embed.name)'",
                hint: "Try changing '\(embed.name)' to one of the foreign keys: "
                    + candidates.compactMap { candidate -> String? in
                        switch candidate.1 {
                        case .manyToOne(let key), .oneToMany(let key): "\(embed.name)!\(key.name)"
                        case .manyToMany(let junction, _, _): "\(embed.name)!\(junction.name)"
                        }
                    }.joined(separator: ", "))
        }
        return candidates[0]
    }

    private mutating func embedded(
        _ embed: RestEmbed, parent: SchemaCache.Table, parentAlias: String,
        embeds: RestQuery, path: String
    ) throws -> (String, Bool) {
        let (target, relation) = try relationship(embed, parent: parent)
        let alias = nextAlias(for: target, avoiding: root)
        var inner: [String] = []
        let list = try selectList(embed.items, table: target, alias: alias, embeds: embeds, path: path, innerJoins: &inner)
        var whereParts: [String] = []
        var from = target.qualified + " AS " + SQL.ident(alias)
        func pairs(_ left: [String], _ leftAlias: String, _ right: [String], _ rightAlias: String) -> String {
            zip(left, right).map { SQL.ident(leftAlias) + "." + SQL.ident($0) + " = " + SQL.ident(rightAlias) + "." + SQL.ident($1) }.joined(separator: " AND ")
        }
        let many: Bool
        switch relation {
        case .manyToOne(let key):
            whereParts.append(pairs(key.foreignColumns, alias, key.columns, parentAlias))
            many = false
        case .oneToMany(let key):
            whereParts.append(pairs(key.columns, alias, key.foreignColumns, parentAlias))
            many = true
        case .manyToMany(let junction, let toParent, let toTarget):
            let junctionAlias = nextAlias(for: junction, avoiding: root)
            from += " JOIN " + junction.qualified + " AS " + SQL.ident(junctionAlias) + " ON " + pairs(toTarget.columns, junctionAlias, toTarget.foreignColumns, alias)
            whereParts.append(pairs(toParent.columns, junctionAlias, toParent.foreignColumns, parentAlias))
            many = true
        }
        if let extra = embeds.embeddedConditions[path], !extra.isEmpty { whereParts.append(try conditions(extra, on: alias)) }
        for subquery in inner { whereParts.append(subquery + " IS NOT NULL") }
        var row = "SELECT " + list + " FROM " + from + " WHERE " + whereParts.joined(separator: " AND ")
        if many {
            row += orderBy(embeds.embeddedOrder[path] ?? [], on: alias)
            if let limit = embeds.embeddedLimit[path] { row += " LIMIT " + bind(String(limit)) }
            if let offset = embeds.embeddedOffset[path] { row += " OFFSET " + bind(String(offset)) }
        }
        let wrapped = SQL.ident("_" + alias)
        if many {
            let aggregate = "(SELECT coalesce(json_agg(" + wrapped + "), '[]') FROM (" + row + ") AS " + wrapped + ")"
            // !inner on a to-many embed keeps parents with at least one match.
            return (embed.inner ? "(SELECT json_agg(" + wrapped + ") FROM (" + row + ") AS " + wrapped + ")" : aggregate, embed.inner)
        }
        return ("(SELECT row_to_json(" + wrapped + ") FROM (" + row + " LIMIT 1) AS " + wrapped + ")", embed.inner)
    }

    // MARK: ordering

    func orderBy(_ terms: [RestOrder], on alias: String) -> String {
        guard !terms.isEmpty else { return "" }
        return " ORDER BY "
            + terms.map { term in
                term.field.sql(on: alias) + (term.descending ? " DESC" : " ASC") + (term.nulls.map { " " + $0 } ?? "")
            }.joined(separator: ", ")
    }
}
