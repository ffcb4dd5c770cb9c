import Foundation
import MeltyPluginSDK

/// The OpenAPI (Swagger 2.0) description PostgREST serves at the API root: one path per
/// table and function of the schema, one definition per table.
enum OpenAPIDocument {
    static func response(cache: SchemaCache, schema: String, request: PluginRequest) -> PluginResponse {
        var paths: [String: Any] = ["/": ["get": ["summary": "OpenAPI description (this document)", "responses": ["200": ["description": "OK"]]]]]
        var definitions: [String: Any] = [:]
        for table in cache.tables.values.filter({ $0.schema == schema }).sorted(by: { $0.name < $1.name }) {
            var properties: [String: Any] = [:]
            for column in table.columns {
                var property: [String: Any] = ["format": column.type, "type": jsonType(column.type)]
                if table.primaryKey.contains(column.name) { property["description"] = "Note:\nThis is a Primary Key.<pk/>" }
                properties[column.name] = property
            }
            definitions[table.name] = [
                "type": "object", "properties": properties,
                "required": table.columns.filter { !$0.nullable && !$0.hasDefault }.map(\.name),
            ] as [String: Any]
            let reference = ["$ref": "#/definitions/\(table.name)"]
            var operations: [String: Any] = ["get": ["tags": [table.name], "responses": ["200": ["description": "OK", "schema": ["type": "array", "items": reference]]]]]
            if !table.isView {
                operations["post"] = ["tags": [table.name], "responses": ["201": ["description": "Created"]]]
                operations["patch"] = ["tags": [table.name], "responses": ["204": ["description": "No Content"]]]
                operations["delete"] = ["tags": [table.name], "responses": ["204": ["description": "No Content"]]]
            }
            paths["/" + table.name] = operations
        }
        for (key, functions) in cache.functions.sorted(by: { $0.key < $1.key }) where key.hasPrefix(schema + ".") {
            guard let function = functions.first else { continue }
            let parameters = function.arguments.map { ["name": $0.name, "format": $0.type, "type": jsonType($0.type), "required": !$0.hasDefault] as [String: Any] }
            paths["/rpc/" + function.name] = [
                "post": ["tags": ["(rpc) " + function.name], "parameters": [["in": "body", "name": "args", "required": true,
                                                                            "schema": ["type": "object", "properties": Dictionary(uniqueKeysWithValues: parameters.map { ($0["name"] as! String, $0) })]]],
                         "responses": ["200": ["description": "OK"]]],
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
