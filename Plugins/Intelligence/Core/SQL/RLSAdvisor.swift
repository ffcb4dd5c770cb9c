import Foundation
import MeltyPostgres

/// Proposes row-level security for the tables of the exposed schemas that have none (RLS
/// off, or on without policies): owner tables (a column references `auth.users(id)`) get
/// `auth.uid() = owner` policies; tables with a tenant column and a membership table get
/// membership policies; tables with no link to users are readable by everyone and written by
/// `service_role` only.
public struct RLSAdvisor: Sendable {
    /// The schemas the REST API exposes.
    public var schemas: [String]

    /// An advisor for `schemas`.
    public init(schemas: [String]) {
        self.schemas = schemas
    }

    /// A column of a table.
    public struct Column: Sendable, Equatable {
        /// Its name.
        public var name: String
        /// `format_type` of it.
        public var type: String
        /// NOT NULL.
        public var notNull: Bool
        /// Has a default, is an identity or generated column.
        public var hasDefault: Bool
        /// `pg_type.typtype` (`e` for enums).
        public var typeKind: String
    }

    /// A single-column foreign key.
    struct ForeignKey: Equatable {
        var schema: String
        var table: String
        var column: String
        var targetSchema: String
        var targetTable: String
        var targetColumn: String
    }

    /// What the catalog says about the schemas' tables.
    public struct Snapshot: Sendable {
        /// `schema.table` → whether RLS is on and how many policies it has.
        var tables: [(schema: String, table: String, rls: Bool, policies: Int, key: String?)]
        var foreignKeys: [ForeignKey]
        /// `schema.table` → columns.
        public var columns: [String: [Column]]
    }

    private static let tenantNames: Set<String> = [
        "org_id", "organization_id", "organisation_id", "team_id", "tenant_id", "workspace_id", "account_id", "company_id", "group_id",
    ]

    /// Reads tables, columns and foreign keys of the schemas.
    public func snapshot(on connection: PostgresConnection) async throws -> Snapshot {
        let list = SQL.textArray(schemas)
        let tables = try await connection.query(
            """
            SELECT n.nspname, c.relname, c.relrowsecurity, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
                   (SELECT a.attname FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
                    WHERE k.conrelid = c.oid AND k.contype = 'p' AND array_length(k.conkey, 1) = 1)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY ($1::text[]) AND NOT c.relispartition
            ORDER BY n.nspname, c.relname LIMIT 500
            """, [list]
        ).rows.map { ($0[0] ?? "", $0[1] ?? "", $0[2] == "t", Int($0[3] ?? "0") ?? 0, $0[4] ?? nil) }
        let keys = try await connection.query(
            """
            SELECT cn.nspname, cl.relname, a.attname, fn.nspname, fc.relname, fa.attname
            FROM pg_constraint k
            JOIN pg_class cl ON cl.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
            JOIN pg_class fc ON fc.oid = k.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace
            JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
            JOIN pg_attribute fa ON fa.attrelid = k.confrelid AND fa.attnum = k.confkey[1]
            WHERE k.contype = 'f' AND array_length(k.conkey, 1) = 1 AND cn.nspname = ANY ($1::text[])
            ORDER BY cn.nspname, cl.relname, a.attnum
            """, [list]
        ).rows.map { ForeignKey(schema: $0[0] ?? "", table: $0[1] ?? "", column: $0[2] ?? "", targetSchema: $0[3] ?? "", targetTable: $0[4] ?? "", targetColumn: $0[5] ?? "") }
        let columnRows = try await connection.query(
            """
            SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', t.typtype::text
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_type t ON t.oid = a.atttypid
            WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY ($1::text[]) AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY n.nspname, c.relname, a.attnum
            """, [list]
        ).rows
        var columns: [String: [Column]] = [:]
        for row in columnRows {
            columns["\(row[0] ?? "").\(row[1] ?? "")", default: []].append(
                Column(name: row[2] ?? "", type: row[3] ?? "", notNull: row[4] == "t", hasDefault: row[5] == "t", typeKind: row[6] ?? "b"))
        }
        return Snapshot(tables: tables, foreignKeys: keys, columns: columns)
    }

    /// Proposals for the tables without policies (only `table` when given: `name` or
    /// `schema.name`).
    public func proposals(_ snapshot: Snapshot, table only: String? = nil) -> [RLSProposal] {
        // A uuid column named like an owner counts as a link to auth.users even without a
        // foreign key (a portal's owner role may lack REFERENCES on auth.users).
        var allKeys = snapshot.foreignKeys
        for (id, columns) in snapshot.columns.sorted(by: { $0.key < $1.key }) {
            guard let dot = id.firstIndex(of: ".") else { continue }
            let schema = String(id[..<dot])
            let table = String(id[id.index(after: dot)...])
            for column in columns where column.type == "uuid" && Self.ownerNames.contains(column.name) {
                if !allKeys.contains(where: { $0.schema == schema && $0.table == table && $0.column == column.name }) {
                    allKeys.append(ForeignKey(schema: schema, table: table, column: column.name, targetSchema: "auth", targetTable: "users", targetColumn: "id"))
                }
            }
        }
        let userKeys = allKeys.filter { $0.targetSchema == "auth" && $0.targetTable == "users" }
        // Membership tables: a user column and a tenant column (a foreign key to another table,
        // or a tenant-like name).
        struct Membership {
            var schema: String
            var table: String
            var user: String
            var tenant: String
            var tenantTarget: (schema: String, table: String, column: String)?
        }
        var memberships: [Membership] = []
        for user in userKeys {
            let others = allKeys.filter { $0.schema == user.schema && $0.table == user.table && $0.column != user.column && $0.targetSchema != "auth" }
            if let tenant = others.first {
                memberships.append(
                    Membership(
                        schema: user.schema, table: user.table, user: user.column, tenant: tenant.column,
                        tenantTarget: (tenant.targetSchema, tenant.targetTable, tenant.targetColumn)))
            } else if let name = snapshot.columns["\(user.schema).\(user.table)"]?.first(where: { Self.tenantNames.contains($0.name) })?.name {
                memberships.append(Membership(schema: user.schema, table: user.table, user: user.column, tenant: name, tenantTarget: nil))
            }
        }
        var found: [RLSProposal] = []
        for entry in snapshot.tables where entry.policies == 0 {
            let id = "\(entry.schema).\(entry.table)"
            if let only, only != id, only != entry.table { continue }
            let qualified = SQLNames.qualified(entry.schema, entry.table)
            let columns = snapshot.columns[id] ?? []
            let isMembership = memberships.contains { $0.schema == entry.schema && $0.table == entry.table }
            let keysHere = allKeys.filter { $0.schema == entry.schema && $0.table == entry.table }
            // A tenant column: a foreign key to the tenants of a membership table, or a tenant-like name it shares.
            var tenant: (column: String, membership: Membership)?
            if !isMembership {
                for membership in memberships {
                    if let target = membership.tenantTarget,
                        let key = keysHere.first(where: { $0.targetSchema == target.schema && $0.targetTable == target.table && $0.targetColumn == target.column })
                    {
                        tenant = (key.column, membership)
                        break
                    }
                    if membership.tenantTarget == nil, columns.contains(where: { $0.name == membership.tenant }) {
                        tenant = (membership.tenant, membership)
                        break
                    }
                }
            }
            let root = memberships.first { $0.tenantTarget?.schema == entry.schema && $0.tenantTarget?.table == entry.table }
            let owner = keysHere.filter { $0.targetSchema == "auth" && $0.targetTable == "users" }
                .sorted { Self.ownerRank($0.column) < Self.ownerRank($1.column) }.first
            var statements = ["ALTER TABLE \(qualified) ENABLE ROW LEVEL SECURITY;"]
            let uid = "(SELECT auth.uid())"
            func policy(_ suffix: String, _ command: String, to roles: String, using: String?, check: String?) {
                var text = "CREATE POLICY \(SQLNames.quoted(String((entry.table + "_" + suffix).prefix(63)))) ON \(qualified) FOR \(command) TO \(roles)"
                if let using { text += " USING (\(using))" }
                if let check { text += " WITH CHECK (\(check))" }
                statements.append(text + ";")
            }
            var proposal = RLSProposal(
                id: id, schema: entry.schema, table: entry.table, kind: "", explanation: "", column: nil, membership: nil, membershipUserColumn: nil,
                membershipTenantColumn: nil, statements: [], expectation: "", trial: nil)
            if let tenant {
                let membership = tenant.membership
                let predicate =
                    "EXISTS (SELECT 1 FROM \(SQLNames.qualified(membership.schema, membership.table)) membership WHERE membership.\(SQLNames.quoted(membership.tenant)) = \(SQLNames.quoted(entry.table)).\(SQLNames.quoted(tenant.column)) AND membership.\(SQLNames.quoted(membership.user)) = \(uid))"
                policy("member_select", "SELECT", to: "authenticated", using: predicate, check: nil)
                policy("member_insert", "INSERT", to: "authenticated", using: nil, check: predicate)
                policy("member_update", "UPDATE", to: "authenticated", using: predicate, check: predicate)
                policy("member_delete", "DELETE", to: "authenticated", using: predicate, check: nil)
                proposal.kind = "tenant"
                proposal.column = tenant.column
                proposal.membership = "\(membership.schema).\(membership.table)"
                proposal.membershipUserColumn = membership.user
                proposal.membershipTenantColumn = membership.tenant
                proposal.explanation =
                    "\(tenant.column) names a tenant and \(membership.schema).\(membership.table) says which users belong to which tenant: members of a row's tenant may read and write it."
                proposal.expectation = "user A sees only rows of A's tenant, user B only B's, anon none"
            } else if let root, let key = root.tenantTarget?.column {
                let predicate =
                    "EXISTS (SELECT 1 FROM \(SQLNames.qualified(root.schema, root.table)) membership WHERE membership.\(SQLNames.quoted(root.tenant)) = \(SQLNames.quoted(entry.table)).\(SQLNames.quoted(key)) AND membership.\(SQLNames.quoted(root.user)) = \(uid))"
                policy("member_select", "SELECT", to: "authenticated", using: predicate, check: nil)
                policy("member_update", "UPDATE", to: "authenticated", using: predicate, check: predicate)
                policy("member_delete", "DELETE", to: "authenticated", using: predicate, check: nil)
                proposal.kind = "tenant_root"
                proposal.column = key
                proposal.membership = "\(root.schema).\(root.table)"
                proposal.membershipUserColumn = root.user
                proposal.membershipTenantColumn = root.tenant
                proposal.explanation =
                    "\(root.schema).\(root.table).\(root.tenant) references these rows: members of a tenant may read, update and delete it; creating tenants is left to service_role."
                proposal.expectation = "user A sees only A's tenant, user B only B's, anon none"
            } else if let owner {
                let predicate = "\(uid) = \(SQLNames.quoted(owner.column))"
                policy("owner_select", "SELECT", to: "authenticated", using: predicate, check: nil)
                policy("owner_insert", "INSERT", to: "authenticated", using: nil, check: predicate)
                policy("owner_update", "UPDATE", to: "authenticated", using: predicate, check: predicate)
                policy("owner_delete", "DELETE", to: "authenticated", using: predicate, check: nil)
                proposal.kind = "owner"
                proposal.column = owner.column
                let linked = snapshot.foreignKeys.contains { $0 == owner }
                proposal.explanation =
                    "\(owner.column) \(linked ? "references auth.users(id)" : "holds a user id (by its name and type; no foreign key to auth.users)"): each user reads and writes only the rows it owns."
                proposal.expectation = "user A sees only A's rows, user B only B's, anon none"
            } else {
                policy("public_read", "SELECT", to: "anon, authenticated", using: "true", check: nil)
                proposal.kind = "public_read"
                proposal.explanation = "No column links the rows to users or tenants: everyone may read them; only service_role (which bypasses RLS) writes."
                proposal.expectation = "user A, user B and anon all see every row"
            }
            proposal.statements = statements
            found.append(proposal)
        }
        return found
    }

    private static let ownerNames: Set<String> = ["user_id", "owner_id", "author_id", "created_by", "profile_id"]

    private static func ownerRank(_ column: String) -> Int {
        ["user_id": 0, "owner_id": 1, "author_id": 2, "created_by": 3, "profile_id": 4, "id": 5][column] ?? 9
    }
}
