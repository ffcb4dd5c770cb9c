import Foundation
import MeltyPluginSDK
import MeltyPostgres
import PortalDatabaseCore
import Synchronization

/// Who a request runs as: the database role from the verified JWT and its claims, set for
/// the transaction exactly as PostgREST does (`role`, `request.jwt.claims`).
struct RequestRole {
    var role: String
    var claimsJSON: String
    var isAnonymous: Bool { role == "anon" }
}

/// `Prefer` header values that shape a response.
struct Preferences {
    var returnRepresentation = false
    var returnHeadersOnly = false
    var count: String?
    var resolution: String?
    var rollback = false
    var missingDefault = false
    /// `handling=strict`: unknown preferences are refused and `max-affected` is enforced.
    var strict = false
    /// `max-affected=N` (with `handling=strict`): a mutation touching more rows is rolled back.
    var maxAffected: Int?
    /// The preferences understood, in the canonical form echoed in `Preference-Applied`.
    private(set) var applied: [String] = []
    /// What was not understood (refused under `handling=strict`).
    private(set) var invalid: [String] = []

    init(_ header: String?) {
        for part in (header ?? "").split(separator: ",") {
            // Spaces and tabs trimmed by hand: Foundation's trimmingCharacters is slow on Linux.
            var trimmed = part
            while trimmed.first == " " || trimmed.first == "\t" { trimmed.removeFirst() }
            while trimmed.last == " " || trimmed.last == "\t" { trimmed.removeLast() }
            let item = String(trimmed)
            switch item {
            case "return=representation": returnRepresentation = true
            case "return=headers-only": returnHeadersOnly = true
            case "return=minimal": break
            case "count=exact", "count=planned", "count=estimated": count = String(item.dropFirst(6))
            case "resolution=merge-duplicates", "resolution=ignore-duplicates": resolution = String(item.dropFirst(11))
            case "tx=rollback": rollback = true
            case "tx=commit": rollback = false
            case "missing=default": missingDefault = true
            case "missing=null": missingDefault = false
            case "handling=strict": strict = true
            case "handling=lenient": strict = false
            case _ where item.hasPrefix("max-affected="):
                // A count of rows: digits only, at most 18 of them (no overflow, no sign).
                let digits = item.dropFirst(13)
                guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(digits) else {
                    invalid.append(String(item.prefix(100)))
                    continue
                }
                maxAffected = value
            case "": continue
            default:
                if item.hasPrefix("timezone=") { break }
                invalid.append(String(item.prefix(100)))
                continue
            }
            applied.append(item)
        }
    }

    /// `max-affected`, enforced only with `handling=strict` (as PostgREST).
    var enforcedMaxAffected: Int? { strict ? maxAffected : nil }

    /// 400 `PGRST122` when `handling=strict` meets a preference this API does not know.
    func refuseInvalid() throws {
        guard strict, !invalid.isEmpty else { return }
        throw RestResponse(
            RestError.response(
                status: 400, code: "PGRST122", message: "Invalid preferences given with handling=strict",
                details: "Invalid preferences: " + invalid.joined(separator: ", "),
                hint: "remove them, or send handling=lenient to have unknown preferences ignored"))
    }

    /// The `Preference-Applied` header value.
    var appliedHeader: String { applied.joined(separator: ", ") }
}

/// `/rest/v1`: PostgREST's dialect over one portal database.
final class RestHandler: Sendable {
    let pool: PostgresPool
    let schemas: [String]
    let maxRows: Int?
    /// Whether execution plans may be asked for (`plan_enabled`, PostgREST's `db-plan-enabled`).
    let planEnabled: Bool
    /// The schema cache and its generation (bumped by DDL, so a load that raced with DDL is
    /// not kept).
    private let cache = Mutex<(schema: SchemaCache?, generation: Int)>((nil, 0))

    init(pool: PostgresPool, schemas: [String], maxRows: Int?, planEnabled: Bool = false) {
        self.pool = pool
        self.schemas = schemas
        self.maxRows = maxRows
        self.planEnabled = planEnabled
    }

    /// Forgets the schema cache (DDL ran); the next request reloads it.
    func invalidate() {
        cache.withLock { $0 = (nil, $0.generation + 1) }
        pool.schemaChanged()
    }

    private func schemaCache() async throws -> SchemaCache {
        let (cached, generation) = cache.withLock { $0 }
        if let cached { return cached }
        let schemas = self.schemas
        let loaded = try await pool.run { connection in try await SchemaCache.load(schemas: schemas, on: connection) }
        cache.withLock { if $0.generation == generation { $0.schema = loaded } }
        return loaded
    }

    func handle(_ request: PluginRequest, role: RequestRole) async -> PluginResponse {
        do {
            return try await route(request, role: role)
        } catch let error as RestParseError {
            return RestError.parse(error)
        } catch let error as RelationshipError {
            return RestError.response(status: error.ambiguous ? 300 : 400, code: error.ambiguous ? "PGRST201" : "PGRST200", message: error.message, hint: error.hint)
        } catch let error as PostgresPoolError {
            return RestError.unavailable(error.description)
        } catch let error as PostgresError {
            return RestError.from(error, anonymous: role.isAnonymous)
        } catch let error as RestResponse {
            return error.response
        } catch {
            return RestError.response(status: 500, code: "PGRST000", message: "\(error)")
        }
    }

    private func route(_ request: PluginRequest, role: RequestRole) async throws -> PluginResponse {
        let method = request.method
        let isRead = method == "GET" || method == "HEAD"
        let profile = isRead ? request.header("accept-profile") : request.header("content-profile")
        let schema = profile ?? schemas[0]
        guard schemas.contains(schema) else {
            throw RestResponse(
                RestError.response(
                    status: 406, code: "PGRST106", message: "The schema must be one of the following: " + schemas.joined(separator: ", "),
                    details: "requested schema \"\(schema)\""))
        }
        let path = request.path.split(separator: "/").map { part in
            part.utf8.contains(UInt8(ascii: "%")) ? String(part).removingPercentEncoding ?? String(part) : String(part)
        }
        if path.isEmpty {
            guard isRead else { throw RestResponse(RestError.response(status: 405, code: "PGRST117", message: "Unsupported HTTP method: \(method)")) }
            let cache = try await schemaCache()
            let visible = try await pipelined(OpenAPIDocument.Visibility.query, [schema], role: role, rollback: false, readOnly: true)
            guard let json = visible.rows.first?.first ?? nil,
                let visibility = try? JSONDecoder().decode(OpenAPIDocument.Visibility.self, from: Data(json.utf8))
            else {
                throw RestResponse(RestError.response(status: 500, code: "PGRST000", message: "could not read the role's privileges for the OpenAPI description"))
            }
            return OpenAPIDocument.response(cache: cache, schema: schema, request: request, visibility: visibility)
        }
        guard let format = ResponseFormat.negotiate(request.header("accept")) else { throw RestResponse(ResponseFormat.unacceptable(request.header("accept"))) }
        if case .plan = format, !planEnabled { throw RestResponse(ResponseFormat.plansDisabled(request.header("accept"))) }
        try Preferences(request.header("prefer")).refuseInvalid()
        let cache = try await schemaCache()
        if path.count == 2 && path[0] == "rpc" {
            guard method == "GET" || method == "POST" || method == "HEAD" else {
                throw RestResponse(RestError.response(status: 405, code: "PGRST117", message: "Unsupported HTTP method: \(method)"))
            }
            return try await callFunction(path[1], schema: schema, cache: cache, request: request, role: role, format: format)
        }
        guard path.count == 1 else {
            throw RestResponse(RestError.response(status: 404, code: "PGRST125", message: "Invalid path specified in request URL"))
        }
        guard let table = cache.table(schema, path[0]) else {
            throw RestResponse(
                RestError.response(
                    status: 404, code: "PGRST205", message: "Could not find the table '\(schema).\(path[0])' in the schema cache",
                    hint: "create it (the cache reloads on DDL) or check the name and the Accept-Profile/Content-Profile header"))
        }
        let query = try RestQuery.parse(request.query)
        switch method {
        case "GET", "HEAD": return try await read(table, query: query, request: request, role: role, cache: cache, format: format)
        case "POST": return try await insert(table, query: query, request: request, role: role, cache: cache, format: format)
        case "PATCH": return try await update(table, query: query, request: request, role: role, cache: cache, format: format)
        case "DELETE": return try await delete(table, query: query, request: request, role: role, cache: cache, format: format)
        default: throw RestResponse(RestError.response(status: 405, code: "PGRST117", message: "Unsupported HTTP method: \(method)"))
        }
    }

    // MARK: reads

    /// Offset and limit from `offset`/`limit` and the `Range` header (the tighter wins).
    func window(_ query: RestQuery, _ request: PluginRequest) throws -> (offset: Int, limit: Int?) {
        var offset = query.offset ?? 0
        var limit = query.limit
        if let range = request.header("range"), request.method == "GET" || request.method == "HEAD" {
            let bounds = range.replacingOccurrences(of: "items=", with: "").split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 2, let start = Int(bounds[0].trimmingCharacters(in: .whitespaces)), start >= 0 else {
                throw RestResponse(RestError.response(status: 416, code: "PGRST103", message: "Requested range not satisfiable", details: "invalid Range header \"\(range)\""))
            }
            offset = max(offset, start)
            if let end = Int(bounds[1].trimmingCharacters(in: .whitespaces)) {
                guard end >= start else { throw RestResponse(RestError.response(status: 416, code: "PGRST103", message: "Requested range not satisfiable")) }
                // end - start cannot overflow (0 <= start <= end); the + 1 can, for end = Int.max.
                let span = end - start == Int.max ? Int.max : end - start + 1
                limit = min(limit ?? Int.max, span)
            }
        }
        if let maxRows { limit = min(limit ?? maxRows, maxRows) }
        return (offset, limit)
    }

    private func read(
        _ table: SchemaCache.Table, query: RestQuery, request: PluginRequest, role: RequestRole, cache: SchemaCache, format: ResponseFormat
    ) async throws -> PluginResponse {
        var sql = RestSQL(cache: cache)
        let (offset, limit) = try window(query, request)
        let preferences = Preferences(request.header("prefer"))
        let alias = RestSQL.rootAlias(table)
        sql.root = alias
        var inner: [String] = []
        let list = try sql.selectList(query.select, table: table, alias: alias, embeds: query, innerJoins: &inner)
        var whereParts: [String] = []
        if !query.conditions.isEmpty { whereParts.append(try sql.conditions(query.conditions, on: alias)) }
        whereParts += inner.map { $0 + " IS NOT NULL" }
        let whereSQL = whereParts.isEmpty ? "" : " WHERE " + whereParts.joined(separator: " AND ")
        let source = table.qualified + " AS " + SQL.ident(alias)
        var page = "SELECT " + list + " FROM " + source + whereSQL + sql.orderBy(query.order, on: alias)
        if let limit { page += " LIMIT " + sql.bind(String(limit)) }
        if offset > 0 { page += " OFFSET " + sql.bind(String(offset)) }
        let total = preferences.count != nil ? "(SELECT count(*) FROM " + source + whereSQL + ")" : "NULL::bigint"
        let statement = "SELECT " + total + ", count(\"_r\"), " + format.bodyAggregate + " FROM (" + page + ") AS \"_r\""
        if case .plan(let plan) = format { return try await explain(statement, sql.parameters, plan: plan, role: role, readOnly: true) }
        let result = try await run(statement, sql.parameters, role: role, singular: format.isSingular, rollback: preferences.rollback, readOnly: true)
        return respond(result, status: 200, request: request, offset: offset, format: format, includeBody: request.method != "HEAD")
    }

    /// The plan of `statement` (`EXPLAIN` with the requested options) as PostgREST answers
    /// it. Always rolled back: with `analyze` the statement runs, and a mutation must not stay.
    private func explain(_ statement: String, _ parameters: [String?], plan: ResponseFormat.PlanRequest, role: RequestRole, readOnly: Bool) async throws -> PluginResponse {
        let result = try await pipelined("EXPLAIN " + plan.explainOptions + " " + statement, parameters, role: role, rollback: true, readOnly: readOnly)
        let lines = result.rows.compactMap { $0.first ?? nil }
        let body = plan.json ? (lines.first ?? "[]") : lines.joined(separator: "\n")
        return PluginResponse(status: 200, headers: [("content-type", plan.contentType)], body: Array(body.utf8))
    }

    /// Runs `statement` in one transaction as `role`; a singular request with other than
    /// one row is rolled back (mutations included) and answered 406.
    /// One round trip: BEGIN, role and claims, the statement, COMMIT (or ROLLBACK). A plan
    /// invalidated by concurrent DDL (SQLSTATE 0A000) is retried once: nothing ran.
    private func pipelined(_ statement: String, _ parameters: [String?], role: RequestRole, rollback: Bool, readOnly: Bool) async throws -> PostgresRows {
        try await pool.run { connection in
            let steps: [(sql: String, parameters: [String?])] = [
                (readOnly ? "BEGIN READ ONLY" : "BEGIN", []),
                ("SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)", [role.role, role.claimsJSON]),
                (statement, parameters),
                (rollback ? "ROLLBACK" : "COMMIT", []),
            ]
            do {
                return try await connection.pipeline(steps)[2]
            } catch let error as PostgresError where error.sqlState == "0A000" {
                return try await connection.pipeline(steps)[2]
            }
        }
    }

    private func run(
        _ statement: String, _ parameters: [String?], role: RequestRole, singular: Bool, rollback: Bool, readOnly: Bool = false, maxAffected: Int? = nil
    ) async throws -> PostgresRows {
        if !singular && maxAffected == nil {
            return try await pipelined(statement, parameters, role: role, rollback: rollback, readOnly: readOnly)
        }
        return try await pool.run { connection in
            try await connection.transaction(readOnly: readOnly) { connection in
                try await connection.preparedQuery("SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)", [role.role, role.claimsJSON])
                let result = try await connection.preparedQuery(statement, parameters)
                let rows = Int(result.rows.first?[1] ?? "0") ?? 0
                if singular && rows != 1 { return (result, false) }
                if let maxAffected, rows > maxAffected { return (result, false) }
                return (result, !rollback)
            }
        }
    }

    private func respond(_ result: PostgresRows, status: Int, request: PluginRequest, offset: Int, format: ResponseFormat, includeBody: Bool) -> PluginResponse {
        let row = result.rows.first ?? [nil, "0", nil]
        let rows = Int(row[1] ?? "0") ?? 0
        let singular = format.isSingular
        if singular && rows != 1 {
            return RestError.response(
                status: 406, code: "PGRST116", message: "JSON object requested, multiple (or no) rows returned",
                details: "The result contains \(rows) rows")
        }
        let total = row[0] ?? "*"
        let (last, overflow) = offset.addingReportingOverflow(max(rows - 1, 0))
        let range = rows == 0 ? "*/\(total)" : "\(offset)-\(overflow ? Int.max : last)/\(total)"
        var status = status
        if status == 200, let totalCount = Int(total), rows < totalCount, request.method == "GET" || request.method == "HEAD" { status = 206 }
        var headers: [(name: String, value: String)] = [("content-type", format.contentType), ("content-range", range)]
        if let totalCount = Int(total), offset > 0, offset >= totalCount {
            return RestError.response(
                status: 416, code: "PGRST103", message: "Requested range not satisfiable",
                details: "An offset of \(offset) was requested, but there are only \(totalCount) rows.", headers: [("content-range", "*/\(totalCount)")])
        }
        let applied = Preferences(request.header("prefer")).appliedHeader
        if !applied.isEmpty { headers.append(("preference-applied", applied)) }
        return PluginResponse(status: status, headers: headers, body: includeBody ? Array((row[2] ?? format.emptyBody).utf8) : [])
    }

    // MARK: writes

    /// The JSON body as rows and the union of their keys in first-seen order.
    private func payload(_ request: PluginRequest, table: SchemaCache.Table, query: RestQuery, allowArray: Bool) throws -> (json: String, columns: [String], count: Int) {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(request.body), options: [.fragmentsAllowed])
        } catch {
            throw RestResponse(
                RestError.response(
                    status: 400, code: "PGRST102", message: "Empty or invalid json", details: request.body.isEmpty ? "the request body is empty" : "the body is not valid JSON"))
        }
        var objects: [[String: Any]]
        var text = request.text
        if let object = parsed as? [String: Any] {
            objects = [object]
            if allowArray { text = "[" + text + "]" }
        } else if let array = parsed as? [[String: Any]], allowArray {
            objects = array
        } else {
            throw RestResponse(
                RestError.response(status: 400, code: "PGRST102", message: "Invalid body", details: allowArray ? "send a JSON object or an array of objects" : "send a JSON object")
            )
        }
        var columns: [String] = []
        if let specified = query.columns {
            columns = specified
        } else {
            var seen = Set<String>()
            for object in objects {
                for key in object.keys.sorted() where !seen.contains(key) {
                    seen.insert(key)
                    columns.append(key)
                }
            }
        }
        for column in columns where table.column(column) == nil {
            throw RestResponse(RestError.response(status: 400, code: "PGRST204", message: "Could not find the '\(column)' column of '\(table.name)' in the schema cache"))
        }
        return (text, columns, objects.count)
    }

    private func insert(
        _ table: SchemaCache.Table, query: RestQuery, request: PluginRequest, role: RequestRole, cache: SchemaCache, format: ResponseFormat
    ) async throws -> PluginResponse {
        let preferences = Preferences(request.header("prefer"))
        let body = try payload(request, table: table, query: query, allowArray: true)
        if body.count == 0 {
            return PluginResponse(status: 201, headers: [("content-type", "application/json; charset=utf-8"), ("content-range", "*/*")], body: Array("[]".utf8))
        }
        var sql = RestSQL(cache: cache)
        let columns = body.columns.map(SQL.ident).joined(separator: ", ")
        var statement = "INSERT INTO " + table.qualified + " AS \"_t\" "
        if body.columns.isEmpty {
            statement += "DEFAULT VALUES"
        } else if preferences.missingDefault {
            // Keys missing from a row take the column default, not NULL.
            let values = body.columns.map { name -> String in
                let fallback = table.column(name)?.defaultExpression ?? "NULL"
                return "CASE WHEN \"_x\".\"j\" ? " + SQL.literal(name) + " THEN (\"_x\".\"p\")." + SQL.ident(name) + " ELSE " + fallback + " END"
            }
            statement +=
                "(" + columns + ") SELECT " + values.joined(separator: ", ") + " FROM (SELECT \"_e\"::jsonb AS \"j\", json_populate_record(NULL::"
                + table.qualified + ", \"_e\") AS \"p\" FROM json_array_elements(" + sql.bind(body.json) + "::json) AS \"_e\") AS \"_x\""
        } else {
            // Bound only here: DEFAULT VALUES takes no parameter, and a bind it does not use is refused (08P01).
            let records = "json_populate_recordset(NULL::" + table.qualified + ", " + sql.bind(body.json) + "::json)"
            statement += "(" + columns + ") SELECT " + columns + " FROM " + records
        }
        if let resolution = preferences.resolution {
            let target = query.onConflict ?? table.primaryKey
            guard !target.isEmpty else {
                throw RestResponse(RestError.response(status: 400, code: "PGRST100", message: "upsert needs on_conflict or a primary key on '\(table.name)'"))
            }
            for column in target where table.column(column) == nil {
                throw RestResponse(RestError.response(status: 400, code: "PGRST204", message: "Could not find the '\(column)' column of '\(table.name)' in the schema cache"))
            }
            statement += " ON CONFLICT (" + target.map(SQL.ident).joined(separator: ", ") + ")"
            let updates = body.columns.filter { !target.contains($0) }
            if resolution == "merge-duplicates" && !updates.isEmpty {
                statement += " DO UPDATE SET " + updates.map { SQL.ident($0) + " = EXCLUDED." + SQL.ident($0) }.joined(separator: ", ")
            } else {
                statement += " DO NOTHING"
            }
        } else if let onConflict = query.onConflict, !onConflict.isEmpty {
            _ = onConflict  // on_conflict without a resolution preference: a plain insert, as in PostgREST.
        }
        return try await mutate(statement, sql: &sql, table: table, query: query, request: request, role: role, preferences: preferences, createdStatus: 201, format: format)
    }

    private func update(
        _ table: SchemaCache.Table, query: RestQuery, request: PluginRequest, role: RequestRole, cache: SchemaCache, format: ResponseFormat
    ) async throws -> PluginResponse {
        let preferences = Preferences(request.header("prefer"))
        let body = try payload(request, table: table, query: query, allowArray: false)
        var sql = RestSQL(cache: cache)
        guard !body.columns.isEmpty else {
            return preferences.returnRepresentation
                ? PluginResponse(status: 200, headers: [("content-type", "application/json; charset=utf-8")], body: Array("[]".utf8))
                : PluginResponse(status: 204, headers: [("content-range", "*/*")])
        }
        var statement =
            "UPDATE " + table.qualified + " AS \"_t\" SET "
            + body.columns.map { SQL.ident($0) + " = \"_p\"." + SQL.ident($0) }.joined(separator: ", ")
            + " FROM json_populate_record(NULL::" + table.qualified + ", " + sql.bind(body.json) + "::json) AS \"_p\""
        if !query.conditions.isEmpty { statement += " WHERE " + (try sql.conditions(query.conditions, on: "_t")) }
        return try await mutate(statement, sql: &sql, table: table, query: query, request: request, role: role, preferences: preferences, createdStatus: 200, format: format)
    }

    private func delete(
        _ table: SchemaCache.Table, query: RestQuery, request: PluginRequest, role: RequestRole, cache: SchemaCache, format: ResponseFormat
    ) async throws -> PluginResponse {
        let preferences = Preferences(request.header("prefer"))
        var sql = RestSQL(cache: cache)
        var statement = "DELETE FROM " + table.qualified + " AS \"_t\""
        if !query.conditions.isEmpty { statement += " WHERE " + (try sql.conditions(query.conditions, on: "_t")) }
        return try await mutate(statement, sql: &sql, table: table, query: query, request: request, role: role, preferences: preferences, createdStatus: 200, format: format)
    }

    /// Runs a mutation: with `return=representation` through `RETURNING` and the select list
    /// (SELECT policies then apply, as in Postgres); otherwise without RETURNING, counting
    /// rows from the command tag, so write-only policies suffice. `max-affected` (with
    /// `handling=strict`) rolls back a mutation that touched more rows and answers 400.
    private func mutate(
        _ mutation: String, sql: inout RestSQL, table: SchemaCache.Table, query: RestQuery, request: PluginRequest, role: RequestRole,
        preferences: Preferences, createdStatus: Int, format: ResponseFormat
    ) async throws -> PluginResponse {
        let singular = format.isSingular
        let maxAffected = request.method == "POST" ? nil : preferences.enforcedMaxAffected
        let plan: ResponseFormat.PlanRequest? = if case .plan(let plan) = format { plan } else { nil }
        if preferences.returnRepresentation || singular || plan != nil {
            var inner: [String] = []
            let list = try sql.selectList(query.select, table: table, alias: "t0", embeds: query, innerJoins: &inner)
            let statement =
                "WITH \"t0\" AS (" + mutation + " RETURNING \"_t\".*) SELECT NULL::bigint, count(\"_r\"), " + format.bodyAggregate
                + " FROM (SELECT " + list + " FROM \"t0\"" + sql.orderBy(query.order, on: "t0") + ") AS \"_r\""
            if let plan { return try await explain(statement, sql.parameters, plan: plan, role: role, readOnly: false) }
            let result = try await run(
                statement, sql.parameters, role: role, singular: singular, rollback: preferences.rollback, maxAffected: maxAffected)
            let affected = Int(result.rows.first?[1] ?? "0") ?? 0
            if let maxAffected, affected > maxAffected { throw Self.exceedsMaxAffected(affected, maxAffected) }
            if !preferences.returnRepresentation {
                if singular, affected != 1 {
                    return respond(result, status: createdStatus, request: request, offset: 0, format: format, includeBody: false)
                }
                let total = preferences.count != nil ? String(affected) : "*"
                let range = affected == 0 ? "*/\(total)" : "0-\(affected - 1)/\(total)"
                return PluginResponse(status: createdStatus == 201 ? 201 : 204, headers: [("content-range", range)])
            }
            return respond(result, status: createdStatus, request: request, offset: 0, format: format, includeBody: true)
        }
        let parameters = sql.parameters
        let affected: Int
        if let maxAffected {
            affected = try await pool.run { connection in
                try await connection.transaction { connection in
                    try await connection.preparedQuery(
                        "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)", [role.role, role.claimsJSON])
                    let result = try await connection.preparedQuery(mutation, parameters)
                    let affected = Int(result.commandTag.split(separator: " ").last ?? "0") ?? 0
                    return (affected, affected <= maxAffected && !preferences.rollback)
                }
            }
            if affected > maxAffected { throw Self.exceedsMaxAffected(affected, maxAffected) }
        } else {
            let result = try await pipelined(mutation, parameters, role: role, rollback: preferences.rollback, readOnly: false)
            affected = Int(result.commandTag.split(separator: " ").last ?? "0") ?? 0
        }
        let total = preferences.count != nil ? String(affected) : "*"
        let range = affected == 0 ? "*/\(total)" : "0-\(affected - 1)/\(total)"
        return PluginResponse(status: createdStatus == 201 ? 201 : 204, headers: [("content-range", range)])
    }

    /// 400 `PGRST124`: the statement was rolled back because it touched more rows than allowed.
    static func exceedsMaxAffected(_ affected: Int, _ limit: Int) -> RestResponse {
        RestResponse(
            RestError.response(
                status: 400, code: "PGRST124", message: "Query result exceeds max-affected preference constraint",
                details: "The query affects \(affected) rows", hint: "nothing was changed; narrow the filters or raise max-affected (\(limit))"))
    }

    // MARK: rpc

    private func callFunction(
        _ name: String, schema: String, cache: SchemaCache, request: PluginRequest, role: RequestRole, format: ResponseFormat
    ) async throws -> PluginResponse {
        let candidates = cache.functions[schema + "." + name] ?? []
        var arguments: [String: Any] = [:]
        var query: RestQuery
        let argumentNames = Set(candidates.flatMap { $0.arguments.map(\.name) })
        if request.method == "POST" {
            if !request.body.isEmpty {
                guard let object = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] else {
                    throw RestResponse(RestError.response(status: 400, code: "PGRST102", message: "Invalid body", details: "send the function's arguments as a JSON object"))
                }
                arguments = object
            }
            query = try RestQuery.parse(request.query)
        } else {
            query = try RestQuery.parse(request.query, treatAsArguments: argumentNames)
            for (key, value) in query.raw { arguments[key] = value }
        }
        let provided = Set(arguments.keys)
        guard
            let function = candidates.first(where: { function in
                let all = Set(function.arguments.map(\.name))
                let required = Set(function.arguments.filter { !$0.hasDefault }.map(\.name))
                return required.isSubset(of: provided) && provided.isSubset(of: all)
            })
        else {
            throw RestResponse(
                RestError.response(
                    status: 404, code: "PGRST202",
                    message: "Could not find the function \(schema).\(name)(\(provided.sorted().joined(separator: ", "))) in the schema cache",
                    hint: candidates.isEmpty
                        ? nil : "the function exists with arguments: " + candidates.map { "(" + $0.arguments.map(\.name).joined(separator: ", ") + ")" }.joined(separator: " or ")))
        }
        var sql = RestSQL(cache: cache)
        var callArguments: [String] = []
        for argument in function.arguments where provided.contains(argument.name) {
            let value = arguments[argument.name]
            callArguments.append(SQL.ident(argument.name) + " => " + sql.bind(Self.text(of: value, type: argument.type)) + "::" + argument.type)
        }
        let call = function.qualified + "(" + callArguments.joined(separator: ", ") + ")"
        let preferences = Preferences(request.header("prefer"))
        let singular = format.isSingular
        let readOnly = request.method != "POST"
        let includeBody = request.method != "HEAD"
        let plan: ResponseFormat.PlanRequest? = if case .plan(let plan) = format { plan } else { nil }
        let statement: String
        if function.returnsRows || function.returnsSet {
            let rowTable =
                cache.table(schema, function.returnType.replacingOccurrences(of: "\"", with: ""))
                ?? SchemaCache.Table(schema: schema, name: name, isView: false, columns: [], primaryKey: [])
            var inner: [String] = []
            let list =
                function.returnsRows
                ? try sql.selectList(query.select, table: rowTable, alias: "t0", embeds: query, innerJoins: &inner)
                : "\"t0\""
            var whereParts: [String] = []
            if !query.conditions.isEmpty { whereParts.append(try sql.conditions(query.conditions, on: "t0")) }
            whereParts += inner.map { $0 + " IS NOT NULL" }
            let rows =
                "SELECT " + list + " FROM " + call + " AS \"t0\"" + (whereParts.isEmpty ? "" : " WHERE " + whereParts.joined(separator: " AND "))
                + sql.orderBy(query.order, on: "t0")
            var window = ""
            if let limit = query.limit { window += " LIMIT " + sql.bind(String(limit)) }
            if let offset = query.offset { window += " OFFSET " + sql.bind(String(offset)) }
            // A single composite is one object; a set is shaped as the request asked.
            let shape: ResponseFormat = function.returnsSet ? format : (format == .csv ? .csv : .object)
            var aggregate = shape.bodyAggregate
            if !function.returnsRows { aggregate = aggregate.replacingOccurrences(of: "json_agg(\"_r\")", with: "json_agg(\"_r\".\"t0\")") }
            if preferences.count != nil && function.returnsSet {
                // The function runs once (a materialized CTE); the total counts every row it
                // returned after the filters, the page is cut from the same rows.
                statement =
                    "WITH \"_src\" AS MATERIALIZED (" + rows + ") SELECT (SELECT count(*) FROM \"_src\"), count(\"_r\"), " + aggregate
                    + " FROM (SELECT * FROM \"_src\"" + window + ") AS \"_r\""
            } else {
                statement = "SELECT NULL::bigint, count(\"_r\"), " + aggregate + " FROM (" + rows + window + ") AS \"_r\""
            }
            if let plan { return try await explain(statement, sql.parameters, plan: plan, role: role, readOnly: readOnly) }
            let result = try await run(statement, sql.parameters, role: role, singular: singular, rollback: preferences.rollback, readOnly: readOnly)
            if !function.returnsSet && !singular {
                let body = result.rows.first?[2] ?? "null"
                return PluginResponse(status: 200, headers: [("content-type", shape.contentType)], body: includeBody ? Array(body.utf8) : [])
            }
            return respond(result, status: 200, request: request, offset: query.offset ?? 0, format: format, includeBody: includeBody)
        }
        statement = "SELECT NULL::bigint, 1, to_json(" + call + ")::text"
        if let plan { return try await explain(statement, sql.parameters, plan: plan, role: role, readOnly: readOnly) }
        let result = try await run(statement, sql.parameters, role: role, singular: false, rollback: preferences.rollback, readOnly: readOnly)
        return PluginResponse(
            status: 200, headers: [("content-type", "application/json; charset=utf-8")], body: includeBody ? Array((result.rows.first?[2] ?? "null").utf8) : [])
    }

    /// A JSON argument as the text Postgres parses for `type` (arrays become array literals).
    static func text(of value: Any?, type: String) -> String? {
        switch value {
        case nil, is NSNull: return nil
        case let string as String: return string
        case let number as NSNumber:
            if String(cString: number.objCType) == "c" { return number.boolValue ? "true" : "false" }
            return number.stringValue
        case let array as [Any] where type.hasSuffix("[]"):
            return "{"
                + array.map { element -> String in
                    guard let text = text(of: element, type: String(type.dropLast(2))) else { return "NULL" }
                    return "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
                }.joined(separator: ",") + "}"
        default:
            return (try? JSONSerialization.data(withJSONObject: value!, options: [.fragmentsAllowed])).map { String(decoding: $0, as: UTF8.self) }
        }
    }
}

/// A finished response thrown from deep inside request handling.
struct RestResponse: Error {
    var response: PluginResponse
    init(_ response: PluginResponse) { self.response = response }
}
