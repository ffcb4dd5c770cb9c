/// Policies proposed for one table from its links to `auth.users`, and what a trial with
/// two synthetic users and anon showed.
public struct RLSProposal: Sendable, Codable, Equatable {
    /// `schema.table`: what `POST /rls/apply` takes.
    public var id: String
    /// The table's schema.
    public var schema: String
    /// The table.
    public var table: String
    /// `owner` (a column references `auth.users`), `tenant` (a tenant column with a
    /// membership table), `tenant_root` (the tenants themselves) or `public_read`.
    public var kind: String
    /// Why this kind.
    public var explanation: String
    /// The owner or tenant column (the tenant table's key for `tenant_root`).
    public var column: String?
    /// The membership table (`schema.table`) for `tenant` and `tenant_root`.
    public var membership: String?
    /// The membership table's user column.
    public var membershipUserColumn: String?
    /// The membership table's tenant column.
    public var membershipTenantColumn: String?
    /// The statements applying it (RLS enabled, then the policies).
    public var statements: [String]
    /// What each identity should see.
    public var expectation: String
    /// The trial's result (nil until tried).
    public var trial: RLSTrialResult?

    enum CodingKeys: String, CodingKey {
        case id, schema, table, kind, explanation, column, membership, statements, expectation, trial
        case membershipUserColumn = "membership_user_column"
        case membershipTenantColumn = "membership_tenant_column"
    }

    /// The statements as one migration file (a header comment, then one statement a line).
    public func migration(name: String) -> String {
        "-- \(name): row-level security for \(id) (\(kind)), proposed by Sentient SQL.\n-- \(explanation)\n" + statements.joined(separator: "\n") + "\n"
    }
}
