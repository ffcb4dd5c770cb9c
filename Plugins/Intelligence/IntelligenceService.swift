import Foundation
import MeltyJSON
import MeltyPluginSDK

/// `intelligence.v1`, the JSON service other plugins call (the Database plugin's
/// `POST /sql/v1/diagnose`). Methods:
/// - `diagnose {"caller": c, "query": s, "error"?: {...}, "role"?: s, "use_model"?: b}` → the
///   diagnosis answer (see `docs/intelligence-sql.md`), or `{"error": {"status", "code",
///   "message", "hint"}}` when refused (the caller must be `service_role` or an AAL2 admin).
enum IntelligenceService {
    /// Runs `method` with the JSON `argument`; the JSON answer.
    static func call(context: IntelligencePortal, method: String, argument: [UInt8]) async throws -> [UInt8] {
        switch method {
        case "diagnose":
            guard let arguments = JSONValue.object(json: argument) else { throw PluginError.invalid("intelligence.v1 diagnose: the argument must be a JSON object") }
            guard let caller = arguments["caller"], case .object = caller, let callerJSON = try? JSONValue.serialize(caller) else {
                throw PluginError.refused("intelligence.v1 diagnose: pass the caller's credential as \"caller\" (the SDK's callService(..., caller: request.credential))")
            }
            try await context.ensureSchema()
            let answer: SQLDiagnoser.Answer
            do throws(SQLDiagnoser.Refusal) {
                answer = try await SQLDiagnoser(context: context).diagnose(body: argument, credential: PluginCredential(json: callerJSON))
            } catch {
                let body: [String: JSONValue] = [
                    "error": [
                        "status": JSONValue(error.status), "code": JSONValue(error.code), "message": JSONValue(error.message), "hint": JSONValue(error.hint),
                    ]
                ]
                return try JSONValue.serialize(body)
            }
            return Array(try JSONEncoder().encode(answer))
        default:
            throw PluginError.notFound("intelligence.v1 has no method \"\(method)\"; methods: diagnose")
        }
    }
}
