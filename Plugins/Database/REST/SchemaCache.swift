import Foundation
import MeltyPostgres
import PortalDatabaseCore

/// What the REST layer knows about the exposed schemas: tables and views with their
/// columns, keys and foreign keys, and functions for `/rpc`. Loaded from the catalogs and
/// reloaded when DDL runs (the portal database's event trigger sends `NOTIFY pgrst`).
struct SchemaCache: Sendable {
    struct Column: Sendable {
        var name: String
        /// `format_type` text (`integer`, `text[]`, `jsonb`).
        var type: String
        var nullable: Bool
        var hasDefault: Bool
        /// The column default as SQL (`pg_get_expr`), for `Prefer: missing=default`.
        var defaultExpression: String? = nil
    }

    struct Table: Sendable {
        var schema: String
        var name: String
        var isView: Bool
        var columns: [Column]
        var primaryKey: [String]
        var comment: String?

        func column(_ name: String) -> Column? { columns.first { $0.name == name } }
        var qualified: String { SQL.ident(schema) + "." + SQL.ident(name) }
    }

    struct ForeignKey: Sendable {
        var name: String
        var schema: String
        var table: String
        var columns: [String]
        var foreignSchema: String
        var foreignTable: String
        var foreignColumns: [String]
    }

    struct Function: Sendable {
        var schema: String
        var name: String
        /// Input arguments in order.
        var arguments: [(name: String, type: String, hasDefault: Bool)]
        var returnsSet: Bool
        var returnType: String
        /// The return type is a row type (table, composite or record), so results are rows.
        var returnsRows: Bool
        var volatile: Bool
        var qualified: String { SQL.ident(schema) + "." + SQL.ident(name) }
    }

    var tables: [String: Table] = [:]  // "schema.name"
    var foreignKeys: [ForeignKey] = []
    var functions: [String: [Function]] = [:]  // "schema.name"

    func table(_ schema: String, _ name: String) -> Table? { tables[schema + "." + name] }

    /// Loads the cache for `schemas` over `connection`.
    static func load(schemas: [String], on connection: PostgresConnection) async throws -> SchemaCache {
        var cache = SchemaCache()
        let list = SQL.textArray(schemas)
        let columns = try await connection.query(
            """
            SELECT n.nspname, c.relname, c.relkind::text, a.attname, format_type(a.atttypid, a.atttypmod),
                   (NOT a.attnotnull)::text, (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '')::text,
                   obj_description(c.oid, 'pg_class'), pg_get_expr(d.adbin, d.adrelid)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
            WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND n.nspname = ANY($1::text[])
            ORDER BY n.nspname, c.relname, a.attnum
            """, [list])
        for row in columns.rows {
            let key = (row[0] ?? "") + "." + (row[1] ?? "")
            var table =
                cache.tables[key]
                ?? Table(
                    schema: row[0] ?? "", name: row[1] ?? "", isView: row[2] == "v" || row[2] == "m",
                    columns: [], primaryKey: [], comment: row[7])
            table.columns.append(
                Column(
                    name: row[3] ?? "", type: row[4] ?? "text", nullable: row[5] == "true", hasDefault: row[6] == "true",
                    defaultExpression: row[8]))
            cache.tables[key] = table
        }
        let constraints = try await connection.query(
            """
            SELECT con.contype::text, n1.nspname, c1.relname, con.conname,
                   (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num)::text,
                   n2.nspname, c2.relname,
                   (SELECT json_agg(a.attname ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num)::text
            FROM pg_constraint con
            JOIN pg_class c1 ON c1.oid = con.conrelid JOIN pg_namespace n1 ON n1.oid = c1.relnamespace
            LEFT JOIN pg_class c2 ON c2.oid = con.confrelid LEFT JOIN pg_namespace n2 ON n2.oid = c2.relnamespace
            WHERE con.contype IN ('p', 'f') AND n1.nspname = ANY($1::text[])
            ORDER BY con.conname
            """, [list])
        func names(_ text: String?) -> [String] {
            (try? JSONSerialization.jsonObject(with: Data((text ?? "[]").utf8))) as? [String] ?? []
        }
        for row in constraints.rows {
            let key = (row[1] ?? "") + "." + (row[2] ?? "")
            if row[0] == "p" {
                cache.tables[key]?.primaryKey = names(row[4])
            } else if let foreignSchema = row[5], let foreignTable = row[6] {
                cache.foreignKeys.append(
                    ForeignKey(
                        name: row[3] ?? "", schema: row[1] ?? "", table: row[2] ?? "", columns: names(row[4]),
                        foreignSchema: foreignSchema, foreignTable: foreignTable, foreignColumns: names(row[7])))
            }
        }
        let functions = try await connection.query(
            """
            SELECT n.nspname, p.proname, p.proretset::text, format_type(p.prorettype, NULL),
                   (t.typtype = 'c' OR p.prorettype = 'record'::regtype OR p.proargmodes && ARRAY['t'::"char", 'o'::"char"])::text,
                   coalesce(array_to_json(p.proargnames)::text, '[]'), coalesce(array_to_json(p.proargmodes::text[])::text, 'null'),
                   (SELECT coalesce(json_agg(format_type(x, NULL) ORDER BY o), '[]') FROM unnest(p.proargtypes) WITH ORDINALITY u(x, o))::text,
                   p.pronargdefaults, p.provolatile::text
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_type t ON t.oid = p.prorettype
            WHERE n.nspname = ANY($1::text[]) AND p.prokind = 'f'
            """, [list])
        for row in functions.rows {
            let allNames = names(row[5])
            let modes = (try? JSONSerialization.jsonObject(with: Data((row[6] ?? "null").utf8))) as? [String]
            let inputTypes = names(row[7])
            var inputNames: [String] = []
            for (index, name) in allNames.enumerated() {
                let mode = modes.map { index < $0.count ? $0[index] : "i" } ?? "i"
                if mode == "i" || mode == "b" || mode == "v" { inputNames.append(name) }
            }
            let defaults = Int(row[8] ?? "0") ?? 0
            var arguments: [(String, String, Bool)] = []
            for (index, type) in inputTypes.enumerated() {
                arguments.append((index < inputNames.count ? inputNames[index] : "", type, index >= inputTypes.count - defaults))
            }
            let function = Function(
                schema: row[0] ?? "", name: row[1] ?? "", arguments: arguments, returnsSet: row[2] == "true",
                returnType: row[3] ?? "", returnsRows: row[4] == "true", volatile: row[9] == "v")
            cache.functions[function.schema + "." + function.name, default: []].append(function)
        }
        return cache
    }
}
