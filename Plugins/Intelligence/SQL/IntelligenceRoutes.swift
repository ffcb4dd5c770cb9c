import Foundation
import MeltyJSON
import MeltyPluginSDK

/// The `/intelligence/v1` routes of one portal: `POST /sql/diagnose` (Sentient SQL), the RLS
/// proposals (``RLSRoutes``) and the provider settings below `/provider`. Every route needs
/// the portal's `service_role` key or an AAL2 admin.
struct IntelligenceRoutes: Sendable {
    /// The portal's shared context.
    let context: IntelligencePortal

    /// DDL of this part's tables in the `intelligence` schema (idempotent): the RLS
    /// migrations applied through `POST /rls/apply`.
    static let schema = """
        CREATE TABLE IF NOT EXISTS intelligence.rls_migrations (
            name text PRIMARY KEY,
            table_id text NOT NULL,
            kind text NOT NULL,
            sql text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """

    /// Answers one `/intelligence/v1/...` request.
    func handle(_ request: PluginRequest) async -> PluginResponse {
        // The provider settings have their own routes and access rules.
        if request.path == "/provider" || request.path.hasPrefix("/provider/") { return await ProviderRoutes(context: context).handle(request) }
        if let refusal = AdminAccess.refusal(request.credential) { return refusal }
        switch (request.method, request.path) {
        case ("POST", "/sql/diagnose"):
            do {
                return .json(try await SQLDiagnoser(context: context).diagnose(body: request.body, credential: request.credential))
            } catch {
                return error.response
            }
        case (_, let path) where path.hasPrefix("/rls/"):
            return await RLSRoutes(context: context).handle(request)
        default:
            return .error(
                status: 404, code: "not_found", message: "no route \(request.method) /intelligence/v1\(request.path)",
                hint: "POST /intelligence/v1/sql/diagnose, GET /intelligence/v1/rls/proposals, POST /intelligence/v1/rls/apply")
        }
    }
}
