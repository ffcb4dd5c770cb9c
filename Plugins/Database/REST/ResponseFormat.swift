import Foundation
import MeltyPluginSDK

/// What a REST request asked to get back, from its `Accept` header (PostgREST's media types):
/// a JSON array, one JSON object, CSV, or the statement's execution plan.
enum ResponseFormat: Equatable {
    /// `application/json` (also `*/*`, `application/*`, no header): a JSON array.
    case json
    /// `application/vnd.pgrst.object+json`: exactly one row as an object (406 otherwise).
    case object
    /// `text/csv`: a header line with the column names, then one line per row.
    case csv
    /// `application/vnd.pgrst.plan[+text|+json]`: `EXPLAIN` of the statement instead of its rows.
    case plan(PlanRequest)

    /// The options of a plan request (`options=analyze|verbose|settings|buffers|wal`).
    struct PlanRequest: Equatable {
        var json: Bool
        var analyze = false
        var verbose = false
        var settings = false
        var buffers = false
        var wal = false
        /// The media type whose statement is explained (`for="..."`); only the JSON forms are planned.
        var target = "application/json"

        /// The `EXPLAIN` option list, e.g. `(FORMAT JSON, ANALYZE, VERBOSE)`.
        var explainOptions: String {
            var options = [json ? "FORMAT JSON" : "FORMAT TEXT"]
            if analyze { options.append("ANALYZE") }
            if verbose { options.append("VERBOSE") }
            if settings { options.append("SETTINGS") }
            if buffers { options.append("BUFFERS") }
            if wal { options.append("WAL") }
            return "(" + options.joined(separator: ", ") + ")"
        }

        /// The response's content type, as PostgREST sends it.
        var contentType: String {
            "application/vnd.pgrst.plan+" + (json ? "json" : "text") + "; for=\"" + target + "\"; charset=utf-8"
        }
    }

    /// The longest `Accept` header read; longer ones are refused (406) rather than parsed.
    static let maxAcceptLength = 4096

    /// The format `accept` asks for, or nil when it names no media type this API produces.
    /// The first acceptable entry wins (PostgREST ignores q-values too).
    static func negotiate(_ accept: String?) -> ResponseFormat? {
        guard let accept, !accept.isEmpty else { return .json }
        guard accept.utf8.count <= maxAcceptLength else { return nil }
        for entry in accept.split(separator: ",") {
            var parameters = entry.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard !parameters.isEmpty else { continue }
            let mediaType = parameters.removeFirst().lowercased()
            switch mediaType {
            case "*/*", "application/*", "application/json", "application/vnd.pgrst.array+json", "application/vnd.pgrst.array":
                return .json
            case "application/vnd.pgrst.object+json", "application/vnd.pgrst.object":
                return .object
            case "text/csv", "text/*":
                return .csv
            case "application/vnd.pgrst.plan", "application/vnd.pgrst.plan+text", "application/vnd.pgrst.plan+json":
                if let plan = planRequest(json: mediaType.hasSuffix("+json"), parameters: parameters) { return .plan(plan) }
            default:
                continue
            }
        }
        return nil
    }

    private static func planRequest(json: Bool, parameters: [String]) -> PlanRequest? {
        var plan = PlanRequest(json: json)
        for parameter in parameters {
            let pair = parameter.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { continue }
            let value = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
            switch pair[0].trimmingCharacters(in: .whitespaces).lowercased() {
            case "options":
                for option in value.split(separator: "|") {
                    switch option.trimmingCharacters(in: .whitespaces).lowercased() {
                    case "analyze": plan.analyze = true
                    case "verbose": plan.verbose = true
                    case "settings": plan.settings = true
                    case "buffers": plan.buffers = true
                    case "wal": plan.wal = true
                    case "": continue
                    default: return nil
                    }
                }
            case "for":
                let target = value.lowercased()
                switch target {
                case "application/json", "application/vnd.pgrst.object+json", "application/vnd.pgrst.object", "text/csv": plan.target = target
                default: return nil
                }
            default: continue
            }
        }
        return plan
    }

    /// 406 `PGRST107` for an `Accept` header naming nothing this API produces.
    static func unacceptable(_ accept: String?) -> PluginResponse {
        let shown = String((accept ?? "").prefix(200))
        return RestError.response(
            status: 406, code: "PGRST107", message: "None of these media types are available: \(shown)",
            hint: "ask for application/json, application/vnd.pgrst.object+json, text/csv or (when plans are enabled) application/vnd.pgrst.plan")
    }

    /// 406 `PGRST107` for a plan request on a database plugin whose `plan_enabled` is off.
    static func plansDisabled(_ accept: String?) -> PluginResponse {
        let shown = String((accept ?? "").prefix(200))
        return RestError.response(
            status: 406, code: "PGRST107", message: "None of these media types are available: \(shown)",
            details: "execution plans are disabled: they can reveal what the data looks like",
            hint: "set plan_enabled = true under [plugins.database.config] to allow them (PostgREST's db-plan-enabled)")
    }

    /// Whether one row (the object form, or a plan of it) is asked for.
    var isSingular: Bool {
        switch self {
        case .object: return true
        case .plan(let plan): return plan.target.hasPrefix("application/vnd.pgrst.object")
        default: return false
        }
    }

    /// The SQL aggregate that turns the rows of `"_r"` into the response body text.
    var bodyAggregate: String {
        switch self {
        case .object: return "(json_agg(\"_r\")->0)::text"
        case .plan(let plan) where plan.target == "text/csv": return ResponseFormat.csv.bodyAggregate
        case .plan(let plan) where plan.target.hasPrefix("application/vnd.pgrst.object"): return ResponseFormat.object.bodyAggregate
        case .json, .plan: return "coalesce(json_agg(\"_r\"), '[]')::text"
        case .csv:
            // PostgREST's CSV: the column names of the first row, then each row's record text
            // without its parentheses (values with commas, quotes or spaces are double-quoted).
            return """
                (coalesce((SELECT string_agg(CASE WHEN "_k" ~ '[,"\\s]' THEN '"' || replace("_k", '"', '""') || '"' ELSE "_k" END, ',')
                             FROM json_object_keys(json_agg("_r")->0) AS "_k"), '')
                 || E'\\n' || coalesce(string_agg(substring("_r"::text, 2, length("_r"::text) - 2), E'\\n'), ''))
                """
        }
    }

    /// The response's content type for data (not plans).
    var contentType: String {
        switch self {
        case .object: return "application/vnd.pgrst.object+json; charset=utf-8"
        case .csv: return "text/csv; charset=utf-8"
        case .plan(let plan): return plan.contentType
        case .json: return "application/json; charset=utf-8"
        }
    }

    /// The body when there is no row to aggregate.
    var emptyBody: String {
        switch self {
        case .object: return "null"
        case .csv: return ""
        default: return "[]"
        }
    }
}
