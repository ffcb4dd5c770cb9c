import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import SentientSQL

/// `GET /intelligence/v1/rls/proposals[?table=]` (each proposal tried as two synthetic users
/// and anon in a rolled-back transaction), `POST /intelligence/v1/rls/apply {"table": "..."}`
/// (applied as a migration recorded in `meltybase_internal.migrations`, audited
/// `intelligence.rls_applied`) and `GET /intelligence/v1/rls/migrations` (the files applied).
struct RLSRoutes: Sendable {
    /// The portal's shared context.
    let context: IntelligencePortal

    private var advisor: RLSAdvisor { RLSAdvisor(schemas: context.settings.sql.rlsSchemas) }

    /// Answers one `/rls/...` request (the caller's access was checked by ``IntelligenceRoutes``).
    func handle(_ request: PluginRequest) async -> PluginResponse {
        switch (request.method, request.path) {
        case ("GET", "/rls/proposals"): return await proposals(request)
        case ("POST", "/rls/apply"): return await apply(request)
        case ("GET", "/rls/migrations"): return await migrations()
        default:
            return .error(
                status: 404, code: "not_found", message: "no route \(request.method) /intelligence/v1\(request.path)",
                hint: "GET /intelligence/v1/rls/proposals, POST /intelligence/v1/rls/apply, GET /intelligence/v1/rls/migrations")
        }
    }

    private static func tableParameter(_ query: String) -> String? {
        // Form encoding: `+` is a space (a literal plus arrives as %2B).
        URLComponents(string: "?" + query.replacingOccurrences(of: "+", with: "%20"))?.queryItems?.first { $0.name == "table" }?.value
    }

    private static func validTable(_ table: String) -> Bool {
        !table.isEmpty && table.utf8.count <= 127 && !table.utf8.contains(0)
    }

    private func proposals(_ request: PluginRequest) async -> PluginResponse {
        let table = Self.tableParameter(request.query)
        if let table, !Self.validTable(table) {
            return .error(status: 400, code: "invalid_table", message: "table must be a table name or schema.table (at most 127 bytes)")
        }
        do {
            let advisor = advisor
            let trial = RLSTrial()
            let proposals = try await context.owner.run { connection in
                let snapshot = try await advisor.snapshot(on: connection)
                var proposals = advisor.proposals(snapshot, table: table)
                for index in proposals.indices.prefix(50) {
                    proposals[index].trial = try await trial.run(proposals[index], snapshot: snapshot, on: connection)
                }
                return proposals
            }
            if let table, proposals.isEmpty {
                return .error(
                    status: 404, code: "no_proposal",
                    message: "no proposal for \(table): it does not exist in \(context.settings.sql.rlsSchemas.joined(separator: ", ")) or already has policies")
            }
            return .json(ProposalList(proposals: proposals, schemas: context.settings.sql.rlsSchemas))
        } catch {
            return Self.unavailable(error)
        }
    }

    /// `GET /rls/proposals`'s answer.
    struct ProposalList: Encodable {
        var proposals: [RLSProposal]
        var schemas: [String]
    }

    /// `POST /rls/apply`'s body: the proposal's table, and whether to apply it despite a failed trial.
    struct ApplyBody: Decodable {
        var table: String
        var force: Bool?
    }

    /// `POST /rls/apply`'s answer: the migration's name, checksum and text.
    struct Applied: Encodable {
        var migration: String
        var checksum: String
        var sql: String
        var proposal: RLSProposal
    }

    private func apply(_ request: PluginRequest) async -> PluginResponse {
        guard request.body.count <= 65_536, let body = try? JSONDecoder().decode(ApplyBody.self, from: Data(request.body)), Self.validTable(body.table) else {
            return .error(status: 400, code: "invalid_body", message: "send {\"table\": \"schema.table\"} (a proposal's id)")
        }
        let advisor = advisor
        let trial = RLSTrial()
        let stamp = Self.timestamp()
        do {
            let outcome: Result<Applied, RLSApplyRefusal> = try await context.owner.run { connection in
                let snapshot = try await advisor.snapshot(on: connection)
                guard var proposal = advisor.proposals(snapshot, table: body.table).first else {
                    return .failure(RLSApplyRefusal(status: 404, code: "no_proposal", message: "no proposal for \(body.table): unknown table, or it already has policies"))
                }
                proposal.trial = try await trial.run(proposal, snapshot: snapshot, on: connection)
                if proposal.trial?.correct != true && body.force != true {
                    return .failure(
                        RLSApplyRefusal(
                            status: 409, code: "trial_failed",
                            message: "the proposal for \(proposal.id) did not pass its two-user trial: \(proposal.trial?.error ?? "an identity saw the wrong rows")",
                            hint: "inspect GET /intelligence/v1/rls/proposals?table=\(proposal.id); send \"force\": true to apply it anyway"))
                }
                let name = "\(stamp)_rls_\(proposal.schema)_\(proposal.table).sql".replacingOccurrences(of: "/", with: "_")
                let sql = proposal.migration(name: name)
                let checksum: String = try await connection.transaction { connection in
                    for statement in proposal.statements { try await connection.execute(statement) }
                    let sum = try await connection.query("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", [sql]).scalar ?? ""
                    try await connection.query("INSERT INTO meltybase_internal.migrations (name, checksum) VALUES ($1, $2)", [name, sum])
                    try await connection.query(
                        "INSERT INTO intelligence.rls_migrations (name, table_id, kind, sql, checksum) VALUES ($1, $2, $3, $4, $5)",
                        [name, proposal.id, proposal.kind, sql, sum])
                    return (sum, true)
                }
                return .success(Applied(migration: name, checksum: checksum, sql: sql, proposal: proposal))
            }
            switch outcome {
            case .failure(let refusal):
                return .error(status: refusal.status, code: refusal.code, message: refusal.message, hint: refusal.hint)
            case .success(let applied):
                do {
                    try await context.host.audit(
                        action: "intelligence.rls_applied", target: applied.proposal.id,
                        details: [
                            "actor": JSONValue(AdminAccess.actor(request.credential)), "migration": JSONValue(applied.migration), "kind": JSONValue(applied.proposal.kind),
                            "checksum": JSONValue(applied.checksum),
                        ], portal: context.portal)
                } catch {
                    context.host.log(.warning, "intelligence: the RLS migration \(applied.migration) was applied but could not be audited: \(error)", portal: context.portal)
                }
                return .json(applied, status: 201)
            }
        } catch let error as PostgresError where !error.isConnectionFailure {
            return .error(status: 409, code: "apply_failed", message: "the policies could not be applied and were rolled back: \(error.description)")
        } catch {
            return Self.unavailable(error)
        }
    }

    /// Why a proposal was not applied.
    struct RLSApplyRefusal: Error {
        var status: Int
        var code: String
        var message: String
        var hint: String?
    }

    /// One migration applied through `POST /rls/apply`.
    struct MigrationRow: Encodable {
        var name: String
        var table: String
        var kind: String
        var checksum: String
        var sql: String
        var appliedAt: String

        enum CodingKeys: String, CodingKey {
            case name, table, kind, checksum, sql
            case appliedAt = "applied_at"
        }
    }

    private func migrations() async -> PluginResponse {
        do {
            let rows = try await context.owner.run { connection in
                try await connection.query(
                    "SELECT name, table_id, kind, checksum, sql, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM intelligence.rls_migrations ORDER BY name"
                ).rows
            }
            let list = rows.map {
                MigrationRow(name: $0[0] ?? "", table: $0[1] ?? "", kind: $0[2] ?? "", checksum: $0[3] ?? "", sql: $0[4] ?? "", appliedAt: $0[5] ?? "")
            }
            return .json(["migrations": list])
        } catch {
            return Self.unavailable(error)
        }
    }

    /// `YYYYMMDDHHMMSS` in UTC, the migration file's prefix.
    static func timestamp() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMddHHmmss"
        return formatter.string(from: Date())
    }

    /// The 503 for a database that could not be reached.
    static func unavailable(_ error: any Error) -> PluginResponse {
        var response = PluginResponse.error(status: 503, code: "database_unavailable", message: "\(error)", hint: "retry shortly")
        response.headers.append(("retry-after", "1"))
        return response
    }
}
