import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import SentientSQL

/// `diagnose` for both entries (`POST /intelligence/v1/sql/diagnose` and the `intelligence.v1`
/// service behind the Database plugin's `POST /sql/v1/diagnose`): the catalog's diagnosis
/// and EXPLAIN-checked fixes, run as the portal's owner role (the console's role); then,
/// when the portal has a model provider, the model's proposals, checked the same way.
struct SQLDiagnoser: Sendable {
    /// The portal's shared context.
    let context: IntelligencePortal

    /// A request body: `{"query" | "statement": "...", "error"?: {...}, "role"?: "...", "use_model"?: bool}`.
    struct Body: Decodable {
        var query: String?
        var statement: String?
        var error: ReportedError?
        var role: String?
        var useModel: Bool?

        enum CodingKeys: String, CodingKey {
            case query, statement, error, role
            case useModel = "use_model"
        }
    }

    /// The error the statement's run returned (the SQL console's error answer fits as is).
    struct ReportedError: Decodable {
        var code: String?
        var sqlstate: String?
        var message: String?
        var details: String?
        var hint: String?
        var position: Int?
        var constraint: String?
    }

    /// A refusal: the HTTP status and error body to answer.
    struct Refusal: Error {
        var status: Int
        var code: String
        var message: String
        var hint: String?

        /// The refusal as an HTTP answer.
        var response: PluginResponse { .error(status: status, code: code, message: message, hint: hint) }
    }

    /// The answer's `model` member.
    struct ModelReport: Encodable {
        var used: Bool
        var reason: String?
        var fixes: Int?
        var dropped: [Dropped]?
        var tokens: Int?
    }

    /// A model proposal that failed its check.
    struct Dropped: Encodable {
        var statement: String
        var reason: String
    }

    /// The answer.
    struct Answer: Encodable {
        var statement: String
        var diagnosis: SQLDiagnosis
        var fixes: [SQLFix]
        var model: ModelReport
    }

    /// Statements longer than this are not sent to a model (prompt size and cost).
    static let maxModelStatement = 20_000

    private static let roles: Set<String> = ["anon", "authenticated", "service_role"]

    /// Parses and validates `body`.
    static func parse(_ body: [UInt8]) throws(Refusal) -> (statement: String, failure: SQLFailure?, role: String?, useModel: Bool) {
        guard body.count <= 1_048_576 else { throw Refusal(status: 413, code: "body_too_large", message: "the body may hold at most 1 MiB") }
        guard let decoded = try? JSONDecoder().decode(Body.self, from: Data(body)) else {
            throw Refusal(
                status: 400, code: "invalid_body", message: "send {\"query\": \"<the failed statement>\", \"error\": {<the error it returned>}}",
                hint: "error takes code, message, details, hint, position and constraint (the SQL console's error answer fits as is)")
        }
        guard let script = decoded.query ?? decoded.statement else {
            throw Refusal(status: 400, code: "invalid_body", message: "\"query\" (the failed statement) is required")
        }
        var failure: SQLFailure?
        var position: Int?
        if let error = decoded.error {
            let state = error.sqlstate ?? error.code ?? ""
            guard state.count == 5, state.allSatisfy({ $0.isASCII && ($0.isNumber || $0.isUppercase) }) else {
                throw Refusal(status: 400, code: "invalid_error", message: "error.code must be a SQLSTATE: five digits or capital letters (\"42703\")")
            }
            if let given = error.position {
                guard given >= 1, given <= SQLDoctor.maxStatementLength else {
                    throw Refusal(status: 400, code: "invalid_error", message: "error.position must be between 1 and \(SQLDoctor.maxStatementLength)")
                }
                position = given
            }
            let texts = [error.message, error.details, error.hint, error.constraint].compactMap { $0 }
            guard texts.allSatisfy({ $0.utf8.count <= 16_384 && !$0.utf8.contains(0) }) else {
                throw Refusal(status: 400, code: "invalid_error", message: "error texts must be at most 16 KiB each, without NUL bytes")
            }
            failure = SQLFailure(
                sqlState: state, message: error.message ?? "", detail: error.details, hint: error.hint, position: error.position, constraint: error.constraint)
        }
        if let role = decoded.role, !roles.contains(role) {
            throw Refusal(status: 400, code: "invalid_role", message: "role must be anon, authenticated or service_role")
        }
        let chosen: (text: String, position: Int?)
        do {
            chosen = try SQLDoctor.statement(from: script, position: position)
        } catch {
            switch error {
            case .empty: throw Refusal(status: 400, code: "invalid_body", message: "\"query\" holds no statement")
            case .tooLong: throw Refusal(status: 413, code: "statement_too_large", message: "a statement may have at most \(SQLDoctor.maxStatementLength) characters")
            case .nulByte:
                throw Refusal(status: 400, code: "invalid_statement", message: "the statement holds a NUL byte (\\u0000), which Postgres text cannot hold", hint: "remove it")
            case .severalStatements(let count):
                throw Refusal(
                    status: 400, code: "several_statements", message: "the query holds \(count) statements and no error position says which failed",
                    hint: "send the failing statement alone, or the error with its position")
            }
        }
        failure?.position = chosen.position
        return (chosen.text, failure, decoded.role, decoded.useModel ?? true)
    }

    /// Diagnoses the statement in `body` for `credential`; the answer's JSON.
    func diagnose(body: [UInt8], credential: PluginCredential) async throws(Refusal) -> Answer {
        if let refusal = AdminAccess.refusal(credential) {
            let message = (try? JSONDecoder().decode(PluginResponse.ErrorBody.self, from: Data(refusal.body)))?.message ?? "refused"
            throw Refusal(status: refusal.status, code: refusal.status == 401 ? "unauthorized" : "forbidden", message: message)
        }
        let request = try Self.parse(body)
        let doctor = SQLDoctor(check: SQLExplainCheck(timeoutMilliseconds: context.settings.sql.explainTimeoutMilliseconds))
        let outcome: SQLDoctor.Outcome
        do {
            outcome = try await context.owner.run { connection in
                try await doctor.diagnose(statement: request.statement, reported: request.failure, role: request.role, on: connection)
            }
        } catch {
            throw Self.unavailable(error)
        }
        var answer = Answer(statement: request.statement, diagnosis: outcome.diagnosis, fixes: outcome.fixes, model: ModelReport(used: false))
        guard request.useModel, let failure = outcome.failure else {
            answer.model.reason = request.useModel ? "there is no error to fix" : "not asked for (use_model: false)"
            return answer
        }
        guard request.statement.unicodeScalars.count <= Self.maxModelStatement else {
            answer.model.reason = "the statement is longer than \(Self.maxModelStatement) characters, too long to send to the model"
            return answer
        }
        let model: PortalModel?
        do {
            model = try await context.model()
        } catch {
            answer.model.reason = "the model provider is not usable: \(error)"
            return answer
        }
        guard let model else {
            answer.model.reason = "no provider configured"
            return answer
        }
        let reply: PortalModel.Reply
        do {
            reply = try await model.complete(system: Self.systemPrompt, user: Self.userPrompt(request.statement, failure, outcome))
        } catch {
            answer.model.reason = "the model call failed: \(error)"
            return answer
        }
        let proposals = ModelProposals.parse(reply.text)
        do {
            let checked = try await context.owner.run { connection in
                try await doctor.checkProposals(proposals, original: request.statement, on: connection)
            }
            let fresh = checked.fixes.filter { fix in !answer.fixes.contains { $0.statement == fix.statement } }
            answer.fixes += fresh
            answer.model = ModelReport(
                used: true, reason: proposals.isEmpty ? "the answer held no statement" : nil, fixes: fresh.count,
                dropped: checked.dropped.map { Dropped(statement: $0.statement, reason: $0.reason) }, tokens: reply.tokens)
        } catch {
            throw Self.unavailable(error)
        }
        return answer
    }

    private static func unavailable(_ error: any Error) -> Refusal {
        if let pool = error as? PostgresPoolError { return Refusal(status: 503, code: "database_unavailable", message: pool.description, hint: "retry shortly") }
        if let postgres = error as? PostgresError {
            return Refusal(status: 503, code: "database_unavailable", message: postgres.description, hint: "retry shortly")
        }
        return Refusal(status: 503, code: "database_unavailable", message: "\(error)", hint: "retry shortly")
    }

    /// The model's instructions.
    static let systemPrompt = """
        You fix failing PostgreSQL statements. You get the relevant schema, the statement, the error \
        and what a catalog-based checker found. Answer only with a JSON object \
        {"fixes": [{"statement": "<one corrected SQL statement>", "reason": "<why>"}]} with at most 3 fixes, \
        best first. Keep the statement's intent; change as little as possible; never add DDL, GRANT or several statements.
        """

    /// The model's prompt: schema excerpt, statement, error and the catalog's findings.
    static func userPrompt(_ statement: String, _ failure: SQLFailure, _ outcome: SQLDoctor.Outcome) -> String {
        var text = "Schema:\n\(outcome.schemaExcerpt)\n\nStatement:\n\(statement)\n\nError: \(failure.message) (SQLSTATE \(failure.sqlState))"
        if let detail = failure.detail { text += "\nDetail: \(detail)" }
        if let hint = failure.hint { text += "\nHint: \(hint)" }
        if let position = failure.position { text += "\nAt character \(position)" }
        text += "\n\nChecker's diagnosis: \(outcome.diagnosis.explanation)"
        if !outcome.hints.isEmpty { text += "\nChecker's candidate ideas: " + outcome.hints.prefix(6).joined(separator: "; ") }
        if !outcome.fixes.isEmpty { text += "\nFixes that already pass EXPLAIN: " + outcome.fixes.map(\.statement).joined(separator: " | ") }
        return text
    }
}
