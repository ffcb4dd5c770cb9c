import Foundation
import MeltyPluginSDK

/// The OpenAPI (Swagger 2.0) description PostgREST serves at the API root: one path per
/// table and function of the schema that the requesting role may use, one definition per
/// table with the columns it may use, and only the operations its grants allow.
enum OpenAPIDocument {
    /// What the requesting role may use, read in its own transaction (its grants decide).
    struct Visibility: Decodable {
        /// `schema.table` → the operations granted (`select`, `insert`, `update`, `delete`) and the columns with any privilege.
        var tables: [String: TableAccess]
        /// `schema.function` names the role may execute.
        var functions: Set<String>

        struct TableAccess: Decodable {
            var operations: Set<String>
            var columns: Set<String>
        }

        /// The query that reads it for `current_user`; `$1` is the schema.
        static let query = """
            SELECT json_build_object(
              'tables', coalesce((SELECT json_object_agg(n.nspname || '.' || c.relname, json_build_object(
                  'operations', array_remove(ARRAY[
                      CASE WHEN has_table_privilege(c.oid, 'SELECT') THEN 'select' END,
                      CASE WHEN has_table_privilege(c.oid, 'INSERT') THEN 'insert' END,
                      CASE WHEN has_table_privilege(c.oid, 'UPDATE') THEN 'update' END,
                      CASE WHEN has_table_privilege(c.oid, 'DELETE') THEN 'delete' END], NULL),
                  'columns', coalesce((SELECT json_agg(a.attname) FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                        AND has_column_privilege(c.oid, a.attnum, 'SELECT, INSERT, UPDATE')), '[]')))
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'f', 'p') AND has_schema_privilege(n.oid, 'USAGE')
                  AND (has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE')
                       OR has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE'))), '{}'),
              'functions', coalesce((SELECT json_agg(DISTINCT n.nspname || '.' || p.proname)
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = $1 AND p.prokind = 'f' AND has_schema_privilege(n.oid, 'USAGE')
                  AND has_function_privilege(p.oid, 'EXECUTE')), '[]'))::text
            """
    }

    static func response(cache: SchemaCache, schema: String, request: PluginRequest, visibility: Visibility) -> PluginResponse {
        var paths: [String: Any] = ["/": ["get": ["summary": "OpenAPI description (this document)", "responses": ["200": ["description": "OK"]]]]]
        var definitions: [String: Any] = [:]
        for table in cache.tables.values.filter({ $0.schema == schema }).sorted(by: { $0.name < $1.name }) {
            guard let access = visibility.tables[schema + "." + table.name] else { continue }
            var properties: [String: Any] = [:]
            for column in table.columns where access.columns.contains(column.name) {
                var property: [String: Any] = ["format": column.type, "type": jsonType(column.type)]
                if table.primaryKey.contains(column.name) { property["description"] = "Note:\nThis is a Primary Key.<pk/>" }
                properties[column.name] = property
            }
            definitions[table.name] =
                [
                    "type": "object", "properties": properties,
                    "required": table.columns.filter { !$0.nullable && !$0.hasDefault && access.columns.contains($0.name) }.map(\.name),
                ] as [String: Any]
            let reference = ["$ref": "#/definitions/\(table.name)"]
            var operations: [String: Any] = [:]
            if access.operations.contains("select") {
                operations["get"] = ["tags": [table.name], "responses": ["200": ["description": "OK", "schema": ["type": "array", "items": reference]]]]
            }
            if !table.isView {
                if access.operations.contains("insert") { operations["post"] = ["tags": [table.name], "responses": ["201": ["description": "Created"]]] }
                if access.operations.contains("update") { operations["patch"] = ["tags": [table.name], "responses": ["204": ["description": "No Content"]]] }
                if access.operations.contains("delete") { operations["delete"] = ["tags": [table.name], "responses": ["204": ["description": "No Content"]]] }
            }
            if !operations.isEmpty { paths["/" + table.name] = operations }
        }
        for (key, functions) in cache.functions.sorted(by: { $0.key < $1.key }) where key.hasPrefix(schema + ".") && visibility.functions.contains(key) {
            guard let function = functions.first else { continue }
            // Arguments are passed by name: unnamed ones (`f(int, int)`) cannot be, so they are not
            // listed, and a name given twice across overloads is listed once.
            var properties: [String: Any] = [:]
            for argument in function.arguments where !argument.name.isEmpty && properties[argument.name] == nil {
                properties[argument.name] = ["name": argument.name, "format": argument.type, "type": jsonType(argument.type), "required": !argument.hasDefault] as [String: Any]
            }
            paths["/rpc/" + function.name] =
                [
                    "post": [
                        "tags": ["(rpc) " + function.name],
                        "parameters": [
                            [
                                "in": "body", "name": "args", "required": true,
                                "schema": ["type": "object", "properties": properties],
                            ]
                        ],
                        "responses": ["200": ["description": "OK"]],
                    ]
                ] as [String: Any]
        }
        let document: [String: Any] = [
            "swagger": "2.0",
            "info": ["title": "MeltyBase portal \(request.portal) REST API", "description": "PostgREST-compatible API of schema \(schema)", "version": "1.0"],
            "host": request.header("host") ?? "localhost",
            "basePath": "/p/\(request.portal)/rest/v1",
            "schemes": ["http", "https"],
            "consumes": ["application/json", "application/vnd.pgrst.object+json"],
            "produces": ["application/json", "application/vnd.pgrst.object+json"],
            "paths": paths,
            "definitions": definitions,
        ]
        var response = PluginResponse.json(document)
        response.headers = [("content-type", "application/openapi+json; charset=utf-8")]
        return response
    }

    static func jsonType(_ type: String) -> String {
        if type.hasSuffix("[]") { return "array" }
        switch type {
        case "integer", "bigint", "smallint": return "integer"
        case "numeric", "real", "double precision": return "number"
        case "boolean": return "boolean"
        case "json", "jsonb": return "object"
        default: return "string"
        }
    }
}
