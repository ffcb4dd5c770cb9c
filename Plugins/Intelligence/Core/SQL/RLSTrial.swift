import Foundation
import MeltyPostgres

/// Tries a proposal in one transaction that is always rolled back: the table's foreign keys
/// are dropped (so synthetic users and tenants need no rows elsewhere), sample rows for two
/// synthetic users are inserted, the policies are created, and user A, user B and anon each
/// select from the table under their role and JWT claims, as the REST API would run them.
public struct RLSTrial: Sendable {
    /// The statement timeout inside the trial, in milliseconds.
    public var timeoutMilliseconds: Int

    /// A trial runner.
    public init(timeoutMilliseconds: Int = 5_000) {
        self.timeoutMilliseconds = min(30_000, max(100, timeoutMilliseconds))
    }

    private struct Refusal: Error {
        var message: String
    }

    /// Runs the trial of `proposal` on `connection` (the portal database as its owner).
    public func run(_ proposal: RLSProposal, snapshot: RLSAdvisor.Snapshot, on connection: PostgresConnection) async throws -> RLSTrialResult {
        let userA = UUID().uuidString.lowercased()
        let userB = UUID().uuidString.lowercased()
        let users = ["user_a": userA, "user_b": userB]
        do {
            return try await connection.transaction { connection in
                let result = try await trial(proposal, snapshot: snapshot, users: (userA, userB), on: connection)
                return (result, false)
            }
        } catch let refusal as Refusal {
            return RLSTrialResult(tried: false, error: refusal.message, users: users, views: [], crossWriteRefused: nil, correct: false)
        } catch let error as PostgresError where !error.isConnectionFailure {
            return RLSTrialResult(tried: false, error: error.description, users: users, views: [], crossWriteRefused: nil, correct: false)
        }
    }

    private func trial(
        _ proposal: RLSProposal, snapshot: RLSAdvisor.Snapshot, users: (a: String, b: String), on connection: PostgresConnection
    ) async throws
        -> RLSTrialResult
    {
        try await connection.query("SET LOCAL statement_timeout = \(timeoutMilliseconds)")
        // Dropping the sample's foreign keys locks the table (and the referenced one) until the
        // rollback: never queue behind the portal's traffic for long, fail the trial instead.
        try await connection.query("SET LOCAL lock_timeout = 500")
        let table = SQLNames.qualified(proposal.schema, proposal.table)
        var involved = [proposal.id]
        if let membership = proposal.membership, membership != proposal.id { involved.append(membership) }
        for id in involved {
            let keys = try await connection.query("SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f'", [Self.regclass(id)]).rows
            for key in keys {
                if let name = key.first ?? nil { try await connection.execute("ALTER TABLE \(Self.regclass(id)) DROP CONSTRAINT \(SQLNames.quoted(name))") }
            }
        }
        // Sample rows, labelled by whose they are.
        var labels: [String: String] = [:]
        let labelColumn: String?
        var crossWrite: (column: String, value: String)?
        switch proposal.kind {
        case "owner":
            guard let column = proposal.column else { throw Refusal(message: "the proposal names no owner column") }
            labelColumn = column
            for (name, id) in [("user_a", users.a), ("user_b", users.b)] {
                try await insertSample(into: proposal.id, values: [column: SQL.literal(id)], snapshot: snapshot, on: connection)
                labels[id] = name
            }
            crossWrite = (column, users.b)
        case "tenant", "tenant_root":
            guard let column = proposal.column, let membership = proposal.membership, let userColumn = proposal.membershipUserColumn,
                let tenantColumn = proposal.membershipTenantColumn
            else { throw Refusal(message: "the proposal names no tenant or membership columns") }
            labelColumn = column
            let type = snapshot.columns[proposal.id]?.first { $0.name == column }?.type ?? "uuid"
            var tenants: [String] = []
            for (name, user) in [("user_a", users.a), ("user_b", users.b)] {
                let tenant = Self.syntheticKey(type: type, index: tenants.count)
                tenants.append(tenant)
                labels[tenant] = name
                try await insertSample(into: proposal.id, values: [column: SQL.literal(tenant)], snapshot: snapshot, on: connection)
                try await insertSample(into: membership, values: [userColumn: SQL.literal(user), tenantColumn: SQL.literal(tenant)], snapshot: snapshot, on: connection)
            }
            if proposal.kind == "tenant" { crossWrite = (column, tenants[1]) }
            // A membership table with RLS on and no policies hides every membership: let members see their own for the trial.
            let hidden = try await connection.query(
                "SELECT c.relrowsecurity AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) FROM pg_class c WHERE c.oid = to_regclass($1)",
                [Self.regclass(membership)]
            ).scalar
            if hidden == "t" {
                try await connection.execute(
                    "CREATE POLICY rls_trial_own_memberships ON \(Self.regclass(membership)) FOR SELECT TO authenticated USING ((SELECT auth.uid()) = \(SQLNames.quoted(userColumn)))"
                )
            }
        default:
            labelColumn = nil
            let count = Int(try await connection.query("SELECT count(*) FROM \(table)").scalar ?? "0") ?? 0
            if count == 0 { try await insertSample(into: proposal.id, values: [:], snapshot: snapshot, on: connection) }
        }
        for statement in proposal.statements { try await connection.execute(statement) }
        let total = Int(try await connection.query("SELECT count(*) FROM \(table)").scalar ?? "0") ?? 0
        var views: [RLSTrialResult.View] = []
        for identity in ["user_a", "user_b", "anon"] {
            let role = identity == "anon" ? "anon" : "authenticated"
            var claims: [String: String] = ["role": role]
            if identity == "user_a" { claims["sub"] = users.a }
            if identity == "user_b" { claims["sub"] = users.b }
            if role == "authenticated" { claims["aud"] = "authenticated" }
            let claimsJSON = "{" + claims.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\($0.value)\"" }.joined(separator: ",") + "}"
            try await connection.query("SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)", [role, claimsJSON])
            let select = labelColumn.map { "SELECT \(SQLNames.quoted($0))::text FROM \(table)" } ?? "SELECT NULL::text FROM \(table)"
            let rows: [[String?]]
            do {
                try await connection.execute("SAVEPOINT rls_trial_view")
                rows = try await connection.query(select).rows
                try await connection.execute("RELEASE SAVEPOINT rls_trial_view")
            } catch let error as PostgresError where !error.isConnectionFailure {
                try await connection.execute("ROLLBACK TO SAVEPOINT rls_trial_view")
                try await connection.execute("RESET ROLE")
                throw Refusal(message: "\(role) cannot read \(proposal.id): \(error.message)" + (error.sqlState == "42501" ? " (a GRANT SELECT is missing)" : ""))
            }
            var sees: [String: Int] = [:]
            for row in rows { sees[labelColumn == nil ? "row" : (row.first.flatMap { $0 }.flatMap { labels[$0] } ?? "other"), default: 0] += 1 }
            let expected: String
            let ok: Bool
            if proposal.kind == "public_read" {
                expected = "all \(total) rows"
                ok = rows.count == total
            } else if identity == "anon" {
                expected = "no rows"
                ok = rows.isEmpty
            } else {
                expected = "only \(identity)'s rows"
                ok = (sees[identity] ?? 0) >= 1 && (sees[identity] ?? 0) == rows.count
            }
            views.append(RLSTrialResult.View(identity: identity, rows: rows.count, sees: sees, expected: expected, ok: ok))
            try await connection.execute("RESET ROLE")
        }
        // User A writing a row that belongs to user B (or B's tenant) must be refused.
        var crossWriteRefused: Bool?
        if let crossWrite {
            try await connection.query(
                "SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)",
                ["{\"aud\":\"authenticated\",\"role\":\"authenticated\",\"sub\":\"\(users.a)\"}"])
            try await connection.execute("SAVEPOINT rls_trial_write")
            do {
                try await insertSample(into: proposal.id, values: [crossWrite.column: SQL.literal(crossWrite.value)], snapshot: snapshot, on: connection)
                crossWriteRefused = false
                try await connection.execute("ROLLBACK TO SAVEPOINT rls_trial_write")
            } catch let error as PostgresError where !error.isConnectionFailure {
                crossWriteRefused = error.sqlState == "42501"
                try await connection.execute("ROLLBACK TO SAVEPOINT rls_trial_write")
            }
            try await connection.execute("RESET ROLE")
        }
        let correct = views.allSatisfy(\.ok) && crossWriteRefused != false
        return RLSTrialResult(
            tried: true, error: nil, users: ["user_a": users.a, "user_b": users.b], views: views, crossWriteRefused: crossWriteRefused, correct: correct)
    }

    /// `schema.table` (from a proposal id) as a quoted name.
    static func regclass(_ id: String) -> String {
        guard let dot = id.firstIndex(of: ".") else { return SQLNames.quoted(id) }
        return SQLNames.qualified(String(id[..<dot]), String(id[id.index(after: dot)...]))
    }

    /// A tenant key of `type` no real row is likely to have.
    static func syntheticKey(type: String, index: Int) -> String {
        if type == "uuid" { return UUID().uuidString.lowercased() }
        if ["integer", "bigint", "smallint"].contains(type) { return String((type == "smallint" ? 32_000 : 2_000_000_000) + index) }
        return "rls-trial-tenant-\(index == 0 ? "a" : "b")"
    }

    /// Inserts one row into `id` with `values` (SQL expressions) and made-up values for the
    /// other NOT NULL columns without defaults.
    private func insertSample(into id: String, values: [String: String], snapshot: RLSAdvisor.Snapshot, on connection: PostgresConnection) async throws {
        var names: [String] = []
        var expressions: [String] = []
        for (name, value) in values.sorted(by: { $0.key < $1.key }) {
            let type = snapshot.columns[id]?.first { $0.name == name }?.type ?? "text"
            names.append(SQLNames.quoted(name))
            expressions.append("CAST(\(value) AS \(type))")
        }
        for column in snapshot.columns[id] ?? [] where column.notNull && !column.hasDefault && values[column.name] == nil {
            guard let value = Self.sampleValue(column) else {
                throw Refusal(message: "cannot make up a value for \(id).\(column.name) (\(column.type)) for the sample rows")
            }
            names.append(SQLNames.quoted(column.name))
            expressions.append(value)
        }
        let statement =
            names.isEmpty
            ? "INSERT INTO \(Self.regclass(id)) DEFAULT VALUES"
            : "INSERT INTO \(Self.regclass(id)) (\(names.joined(separator: ", "))) OVERRIDING SYSTEM VALUE VALUES (\(expressions.joined(separator: ", ")))"
        try await connection.execute(statement)
    }

    /// A made-up value for `column`'s type, as an SQL expression.
    static func sampleValue(_ column: RLSAdvisor.Column) -> String? {
        let type = column.type
        if column.typeKind == "e" { return "enum_first(NULL::\(type))" }
        if type == "uuid" { return "gen_random_uuid()" }
        if type == "smallint" { return "(1 + floor(random() * 30000))::smallint" }
        if type == "integer" || type == "bigint" { return "(1000000 + floor(random() * 1000000000))::\(type)" }
        if type.hasPrefix("numeric") || type == "real" || type == "double precision" { return "CAST(1 AS \(type))" }
        if type == "text" || type.hasPrefix("character") || type == "citext" { return "CAST('rls-trial-' || md5(random()::text) AS \(type))" }
        if type == "boolean" { return "false" }
        if type.hasPrefix("timestamp") || type == "date" || type.hasPrefix("time") { return "CAST(now() AS \(type))" }
        if type == "json" || type == "jsonb" { return "'{}'::\(type)" }
        if type.hasSuffix("[]") { return "'{}'::\(type)" }
        return nil
    }
}
