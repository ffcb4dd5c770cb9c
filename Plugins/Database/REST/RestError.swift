import Foundation
import MeltyPluginSDK
import MeltyPostgres
import PortalDatabaseCore

/// PostgREST's error body `{code, message, details, hint}` with its HTTP status mapping.
enum RestError {
    static func response(status: Int, code: String, message: String, details: String? = nil, hint: String? = nil, headers: [(String, String)] = []) -> PluginResponse {
        var response = PluginResponse.json(["code": code, "message": message, "details": details ?? NSNull(), "hint": hint ?? NSNull()] as [String: Any], status: status)
        response.headers += headers.map { (name: $0.0, value: $0.1) }
        return response
    }

    /// The HTTP status PostgREST gives a SQLSTATE (`anonymous`: 42501 is 401 for anon, else 403).
    static func status(for sqlState: String, anonymous: Bool) -> Int {
        switch sqlState {
        case "23503", "23505": return 409
        case "42501": return anonymous ? 401 : 403
        case "42883", "42P01": return 404
        case "25006": return 405
        case "P0001": return 400
        case "42P17": return 500
        default: break
        }
        switch String(sqlState.prefix(2)) {
        case "08", "53": return 503
        case "0L", "0P", "28": return 403
        case "22", "23", "42", "3F": return 400  // 3F: a cast or name in a schema that does not exist
        case "54": return 413
        case "57": return sqlState.hasPrefix("57P0") ? 503 : 500
        case "PT":
            // RAISE ... USING ERRCODE = 'PT402' sets the status, as PostgREST allows.
            return Int(sqlState.dropFirst(2)).flatMap { (100...599).contains($0) ? $0 : nil } ?? 500
        default: return 500
        }
    }

    /// A Postgres error as PostgREST renders it.
    static func from(_ error: PostgresError, anonymous: Bool) -> PluginResponse {
        let code = error.sqlState ?? "08000"
        let status = status(for: code, anonymous: anonymous)
        var headers: [(String, String)] = []
        if status == 401 { headers.append(("www-authenticate", "Bearer")) }
        if status == 503 { headers.append(("retry-after", "1")) }
        return response(status: status, code: code, message: error.message, details: error.detail, hint: error.hint, headers: headers)
    }

    static func parse(_ error: RestParseError) -> PluginResponse {
        response(status: 400, code: "PGRST100", message: error.message, details: error.details)
    }

    static func unavailable(_ message: String) -> PluginResponse {
        response(status: 503, code: "PGRST001", message: message, hint: "retry shortly", headers: [("retry-after", "1")])
    }
}
