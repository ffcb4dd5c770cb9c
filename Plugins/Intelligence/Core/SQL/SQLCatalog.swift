import MeltyPostgres

/// What the catalog says about the relations and columns a statement could mean: every
/// table, view and column of the database's own schemas, and the search path.
public struct SQLCatalog: Sendable {
    /// A table, view or materialized view.
    public struct Relation: Sendable, Equatable {
        /// Its schema.
        public var schema: String
        /// Its name.
        public var name: String
        /// Its columns in order: name and type.
        public var columns: [(name: String, type: String)]

        /// Whether it has a column named exactly `name`.
        public func hasColumn(_ name: String) -> Bool { columns.contains { $0.name == name } }

        /// The type of column `name`.
        public func type(of name: String) -> String? { columns.first { $0.name == name }?.type }

        /// Relations are equal when schema and name are.
        public static func == (lhs: Relation, rhs: Relation) -> Bool { lhs.schema == rhs.schema && lhs.name == rhs.name }
    }

    /// The schemas of the search path, in order.
    public var searchPath: [String]
    /// The relations, search-path schemas first.
    public var relations: [Relation]

    /// A catalog from parts (for tests).
    public init(searchPath: [String], relations: [Relation]) {
        self.searchPath = searchPath
        self.relations = relations
    }

    /// Reads the catalog on `connection` (at most 2,000 relations and 20,000 columns).
    public static func load(on connection: PostgresConnection) async throws -> SQLCatalog {
        let path = try await connection.query("SELECT unnest(current_schemas(false))").rows.compactMap { $0.first ?? nil }
        let rows = try await connection.query(
            """
            SELECT n.nspname, c.relname, coalesce(string_agg(a.attname || chr(1) || format_type(a.atttypid, a.atttypmod), chr(2) ORDER BY a.attnum), '')
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'meltybase_internal')
              AND n.nspname NOT LIKE 'pg\\_%'
              AND has_schema_privilege(n.oid, 'USAGE')
            GROUP BY n.nspname, c.relname
            ORDER BY n.nspname = ANY (current_schemas(false)) DESC, array_position(current_schemas(false), n.nspname), n.nspname, c.relname
            LIMIT 2000
            """
        ).rows
        let relations = rows.map { row -> Relation in
            let columns = (row[2] ?? "").split(separator: "\u{2}").prefix(2_000).map { part -> (name: String, type: String) in
                let pieces = part.split(separator: "\u{1}", maxSplits: 1, omittingEmptySubsequences: false)
                return (String(pieces.first ?? ""), pieces.count > 1 ? String(pieces[1]) : "")
            }
            return Relation(schema: row[0] ?? "", name: row[1] ?? "", columns: columns)
        }
        return SQLCatalog(searchPath: path, relations: relations)
    }

    /// The relation a statement's `schema.name` (or bare `name`, by the search path) denotes.
    public func resolve(schema: String?, name: String) -> Relation? {
        if let schema { return relations.first { $0.schema == schema && $0.name == name } }
        for entry in searchPath {
            if let found = relations.first(where: { $0.schema == entry && $0.name == name }) { return found }
        }
        return nil
    }

    /// The relations `shape` names, with the qualifier its columns take, in order.
    public func scope(of shape: SQLStatementShape) -> [(reference: SQLStatementShape.RelationReference, relation: Relation)] {
        shape.relations.compactMap { reference in resolve(schema: reference.schema, name: reference.name).map { (reference, $0) } }
    }

    /// Whether `schema` is on the search path.
    public func onPath(_ schema: String) -> Bool { searchPath.contains(schema) }

    /// A compact description of `relations` for a model prompt: `schema.table(col type, ...)`.
    public static func excerpt(_ relations: [Relation], limit: Int = 12) -> String {
        relations.prefix(limit).map { relation in
            "\(relation.schema).\(relation.name)(" + relation.columns.prefix(60).map { "\($0.name) \($0.type)" }.joined(separator: ", ") + ")"
        }.joined(separator: "\n")
    }
}
