import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import PortalDatabaseCore

/// `POST /sql/v1/query {"query": "..."}`: runs SQL as the portal's owner role (never a
/// superuser) for the service role and `aal2` admins. Several statements may be sent; the
/// answer is the last one's columns, rows and command tag, or the SQLSTATE, message,
/// position and hint of the first error.
final class SQLConsole: Sendable {
    let pool: PostgresPool
    let host: PluginHostServices
    let portal: Portal

    init(pool: PostgresPool, host: PluginHostServices, portal: Portal) {
        self.pool = pool
        self.host = host
        self.portal = portal
    }

    /// Type names of common OIDs (others show as their OID).
    static let typeNames: [UInt32: String] = [
        16: "bool", 17: "bytea", 20: "int8", 21: "int2", 23: "int4", 25: "text", 26: "oid", 114: "json", 700: "float4", 701: "float8",
        1042: "bpchar", 1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp", 1184: "timestamptz", 1186: "interval",
        1700: "numeric", 2950: "uuid", 3802: "jsonb", 1007: "_int4", 1009: "_text", 1016: "_int8", 3614: "tsvector", 3904: "int4range",
    ]

    func handle(_ request: PluginRequest) async -> PluginResponse {
        let credential = request.credential
        if let refusal = credential.refusalUnlessServiceRoleOrAAL2Admin("the SQL console") { return refusal }
        if request.method == "POST", request.path == "/diagnose" { return await diagnose(request) }
        guard request.method == "POST", request.path == "/query" else {
            return .error(status: 404, code: "not_found", message: "no SQL console route \(request.method) \(request.path)", hint: "POST /sql/v1/query {\"query\": \"select 1\"}")
        }
        guard let query = (try? JSONDecoder().decode(QueryBody.self, from: Data(request.body)))?.query,
            !query.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else {
            return .error(status: 400, code: "invalid_body", message: "send {\"query\": \"<SQL>\"}")
        }
        do {
            // The statements are the client's own: whatever they set (a role, settings, an open
            // transaction) is undone before the connection serves anyone else.
            // (Not after a lost connection: the pool then retries on a fresh one only if nothing
            // else was sent on this one.)
            let result = try await pool.run { connection in
                do {
                    let result = try await connection.execute(query)
                    try? await connection.resetSession()
                    return result
                } catch let error as PostgresError where !error.isConnectionFailure {
                    try? await connection.resetSession()
                    throw error
                }
            }
            try? await host.audit(
                action: "database.sql", target: portal.name,
                details: [
                    "actor": JSONValue(credential.kind == .admin ? "admin:\(credential.subject ?? "")" : "service_role"),
                    "command": JSONValue(result.commandTag), "length": JSONValue(query.count),
                ],
                portal: portal)
            let columns = zip(result.columns, result.types).map { Column(name: $0, type: Self.typeNames[$1] ?? String($1)) }
            let rows = result.rows.map { row in zip(row, result.types).map { Self.json($0, type: $1) } }
            return .json(QueryAnswer(columns: columns, rows: rows, command: result.commandTag, rowCount: rows.count))
        } catch let error as PostgresError {
            if error.isConnectionFailure {
                var response = PluginResponse.error(status: 503, code: "database_unavailable", message: error.message, hint: "retry shortly")
                response.headers.append(("retry-after", "1"))
                return response
            }
            return .json(
                SQLErrorAnswer(
                    code: error.sqlState ?? "XX000", message: error.message, details: error.detail, hint: error.hint,
                    position: error.position), status: 400)
        } catch let error as PostgresPoolError {
            var response = PluginResponse.error(status: 503, code: "database_unavailable", message: error.description, hint: "retry shortly")
            response.headers.append(("retry-after", "1"))
            return response
        } catch {
            return .error(status: 500, code: "internal_error", message: "\(error)")
        }
    }

    /// `POST /sql/v1/diagnose {"query": "...", "error"?: {...}}`: the Intelligence plugin's
    /// diagnosis of a failed statement (`intelligence.v1` `diagnose`, run as this console's
    /// role), with EXPLAIN-checked fixes. The body is passed on as it came, with the caller.
    func diagnose(_ request: PluginRequest) async -> PluginResponse {
        guard request.body.count <= 1_048_576, let arguments = JSONValue.object(json: request.body) else {
            return .error(status: 400, code: "invalid_body", message: "send {\"query\": \"<the failed statement>\", \"error\": {<the error it returned>}}")
        }
        let reply: [UInt8]
        do {
            reply = try await host.callService("intelligence", major: 1, method: "diagnose", arguments: arguments, caller: request.credential, portal: portal)
        } catch let error as PluginError {
            switch error {
            case .notFound, .refused:
                return .error(
                    status: 409, code: "intelligence_not_enabled", message: "SQL diagnosis needs the intelligence plugin, which is not enabled for portal \(portal.name)",
                    hint: "enable it for the portal (plugins = [..., \"intelligence\"] in [portals.\(portal.name)], or meltybase portal create --plugins database,intelligence)")
            default:
                return .error(status: 503, code: "intelligence_unavailable", message: "the intelligence plugin did not answer: \(error)", hint: "retry shortly")
            }
        } catch {
            return .error(status: 503, code: "intelligence_unavailable", message: "the intelligence plugin did not answer: \(error)", hint: "retry shortly")
        }
        if let refusal = JSONValue.object(json: reply)?["error"]?.objectValue, let status = refusal["status"]?.intValue, (400...599).contains(status) {
            return .error(
                status: status, code: refusal["code"]?.stringValue ?? "refused", message: refusal["message"]?.stringValue ?? "refused", hint: refusal["hint"]?.stringValue)
        }
        return PluginResponse(status: 200, headers: [("content-type", "application/json")], body: reply)
    }

    /// A text value as JSON by its type: numbers, booleans and JSON stay typed (integers
    /// exactly; a non-finite float, which JSON cannot hold, stays text).
    static func json(_ text: String?, type: UInt32) -> CanonicalJSON {
        guard let text else { return .null }
        switch type {
        case 16: return .bool(text == "t")
        case 20, 21, 23, 26: return Int64(text).map(CanonicalJSON.integer) ?? .string(text)
        case 700, 701: return Double(text).flatMap { $0.isFinite ? CanonicalJSON.number($0) : nil } ?? .string(text)
        case 114, 3802: return (try? CanonicalJSON(parsing: text)) ?? .string(text)
        default: return .string(text)
        }
    }

    /// `POST /sql/v1/query`'s body.
    struct QueryBody: Decodable {
        var query: String
    }

    /// A result column: its name and type name.
    struct Column: Encodable {
        var name: String
        var type: String
    }

    /// A statement's result.
    struct QueryAnswer: Encodable {
        var columns: [Column]
        var rows: [[CanonicalJSON]]
        var command: String
        var rowCount: Int

        enum CodingKeys: String, CodingKey {
            case columns, rows, command
            case rowCount = "row_count"
        }
    }

    /// A Postgres error, as PostgREST shapes it (absent fields are `null`).
    struct SQLErrorAnswer: Encodable {
        var code: String
        var message: String
        @NullWhenAbsent var details: String?
        @NullWhenAbsent var hint: String?
        @NullWhenAbsent var position: Int?
    }
}
