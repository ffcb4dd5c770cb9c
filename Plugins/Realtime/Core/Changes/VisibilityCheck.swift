import MeltyPostgres
import Synchronization

/// Who a subscriber is to Postgres: its role and JWT claims. Subscribers with the same
/// token share one audience, so visibility is decided once for all of them.
public struct Audience: Hashable, Sendable {
    /// The database role (`anon`, `authenticated`, `service_role`).
    public var role: String
    /// The JWT claims as JSON text (what `request.jwt.claims` holds; `auth.uid()` reads `sub`).
    public var claims: String

    /// The audience of `role` with `claims`.
    public init(role: String, claims: String) {
        self.role = role
        self.claims = claims
    }
}

/// What one audience may see of a batch of changes.
public struct Visibility: Sendable, Equatable {
    /// Indices into the batch of the changes it may see, in order.
    public var changes: [Int]
    /// The columns its role may select (the only ones its events carry).
    public var columns: Set<String>
    /// Whether DELETEs carry only the primary key in `old_record` (the table has row-level
    /// security, so the deleted row's other values are not known to be visible).
    public var oldRecordKeyOnly: Bool

    /// Nothing visible.
    public static let none = Visibility(changes: [], columns: [], oldRecordKeyOnly: true)

    /// Visibility of the changes at `changes`, restricted to `columns`.
    public init(changes: [Int], columns: Set<String>, oldRecordKeyOnly: Bool) {
        self.changes = changes
        self.columns = columns
        self.oldRecordKeyOnly = oldRecordKeyOnly
    }

    /// The `postgres_changes` `data` object of `change` as this audience may see it.
    public func dataJSON(_ change: RowChange) -> [UInt8] {
        change.dataJSON(visibleColumns: columns, oldRecordKeyOnly: oldRecordKeyOnly)
    }
}

/// Decides which changes each audience may see, as Supabase does: an INSERT or UPDATE of a
/// table with row-level security is visible when the row, re-selected by primary key as the
/// audience (its role and claims set for the transaction), comes back; a DELETE reaches
/// every role that may select from the table, with only the key in `old_record`; without
/// row-level security (or for a role with BYPASSRLS, such as `service_role`) a role that may
/// select sees everything. Only the columns a role may select are shown
/// (`has_column_privilege`, cached per role and table until ``reset()``).
///
/// For throughput a batch costs one round trip per table: a single pipelined read-only
/// transaction that, per audience, sets role and claims and re-selects at once the changed
/// keys its subscriptions matched (two statements per audience, whatever the number of
/// changes or subscribers).
/// Setting claims per row inside one statement (`unnest` + `LATERAL set_config`) is not
/// used: a policy written `owner = (select auth.uid())`, as Supabase recommends, becomes an
/// InitPlan that Postgres evaluates once per statement, so later audiences would be judged
/// with the first one's claims.
///
/// The connection must be allowed to switch into the audiences' roles and nothing more:
/// log in as the portal's `authenticator`. Roles outside `allowedRoles` see nothing.
public final class VisibilityCheck: Sendable {
    private struct TableKey: Hashable {
        var schema: String
        var table: String
    }
    private struct RoleTableKey: Hashable {
        var role: String
        var table: TableKey
    }
    /// A table's row-level security and primary key (name, SQL type).
    private struct TableInfo {
        var exists: Bool
        var rowLevelSecurity: Bool
        var primaryKey: [(name: String, type: String)]
    }
    /// What a role may do with a table.
    private struct RoleAccess {
        var bypassesRowLevelSecurity: Bool
        var columns: Set<String>
        /// A permissive SELECT (or ALL) policy applies to the role: without one, row-level
        /// security hides every row from it, so it learns of no DELETE either.
        var hasSelectPolicy: Bool
    }
    private struct Caches {
        var tables: [TableKey: TableInfo] = [:]
        var access: [RoleTableKey: RoleAccess] = [:]
        var statements = 0
        var roundTrips = 0
    }

    /// Roles an audience may have.
    public let allowedRoles: Set<String>
    /// Audiences per pipelined transaction (bounds one round trip's size).
    public let audiencesPerRoundTrip: Int
    private let caches = Mutex(Caches())

    /// A check for audiences in `allowedRoles`.
    public init(allowedRoles: Set<String> = ["anon", "authenticated", "service_role"], audiencesPerRoundTrip: Int = 500) {
        self.allowedRoles = allowedRoles
        self.audiencesPerRoundTrip = max(1, audiencesPerRoundTrip)
    }

    /// Forgets cached privileges and table shapes (call after DDL or GRANT/REVOKE).
    public func reset() {
        caches.withLock { caches in
            caches.tables.removeAll()
            caches.access.removeAll()
        }
    }

    /// Statements and round trips sent so far (for tests and metering).
    public var counters: (statements: Int, roundTrips: Int) { caches.withLock { ($0.statements, $0.roundTrips) } }

    /// What each of `audiences` may see of `changes` (any tables; usually one transaction's
    /// changes of one table), asking `connection`. Every audience has an entry.
    ///
    /// `relevant`, when given, names the changes each audience's subscriptions matched (by
    /// index into `changes`): only those are re-selected for it, so a batch of rows that
    /// each match one subscriber's filter costs one key per audience, not every key for
    /// every audience. An audience missing from it is asked about every change.
    public func visibility(
        of changes: [RowChange], for audiences: [Audience], relevant: [Audience: Set<Int>]? = nil, on connection: PostgresConnection
    ) async throws -> [Audience: Visibility] {
        var result: [Audience: Visibility] = [:]
        let distinct = Array(Set(audiences))
        for audience in distinct { result[audience] = Visibility(changes: [], columns: [], oldRecordKeyOnly: true) }
        var groups: [TableKey: [Int]] = [:]
        var order: [TableKey] = []
        // Transactions already seen visible in this call: later tables of the batch do not ask again.
        var visibleTransactions = Set<UInt32>()
        for (index, change) in changes.enumerated() {
            let key = TableKey(schema: change.schema, table: change.table)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(index)
        }
        for table in order {
            let indices = groups[table] ?? []
            let info = try await tableInfo(table, on: connection)
            guard info.exists else { continue }
            var access: [String: RoleAccess] = [:]
            for role in Set(distinct.map(\.role)) where allowedRoles.contains(role) {
                access[role] = try await roleAccess(role, table, on: connection)
            }
            var reselect: [Audience] = []
            for audience in distinct {
                guard let roleAccess = access[audience.role], !roleAccess.columns.isEmpty else { continue }
                let filtered = !roleAccess.bypassesRowLevelSecurity && info.rowLevelSecurity
                var visibility = result[audience, default: .none]
                visibility.columns = roleAccess.columns
                visibility.oldRecordKeyOnly = filtered
                if filtered {
                    if roleAccess.hasSelectPolicy { visibility.changes += indices.filter { changes[$0].type == .delete } }
                    let keyReadable = !info.primaryKey.isEmpty && info.primaryKey.allSatisfy { roleAccess.columns.contains($0.name) }
                    if keyReadable && indices.contains(where: { changes[$0].type != .delete }) { reselect.append(audience) }
                } else {
                    visibility.changes += indices
                }
                result[audience] = visibility
            }
            guard !reselect.isEmpty else { continue }
            let rowIndices = indices.filter { changes[$0].type != .delete }
            var keyOf: [Int: (joined: String, values: [String])] = [:]
            for index in rowIndices {
                guard let key = Self.key(changes[index], info.primaryKey.map(\.name)) else { continue }
                keyOf[index] = (key.joined(separator: "\u{0}"), key)
            }
            guard !keyOf.isEmpty else { continue }
            // Each audience's keys: those of the changes its subscriptions matched (all without `relevant`).
            var keysOf: [Audience: [[String]]] = [:]
            for audience in reselect {
                let wanted = relevant?[audience]
                var seen = Set<String>()
                var keys: [[String]] = []
                for index in rowIndices where wanted?.contains(index) ?? true {
                    guard let key = keyOf[index], seen.insert(key.joined).inserted else { continue }
                    keys.append(key.values)
                }
                if !keys.isEmpty { keysOf[audience] = keys }
            }
            let asked = reselect.filter { keysOf[$0] != nil }
            guard !asked.isEmpty else { continue }
            try await waitUntilVisible(Set(rowIndices.map { changes[$0].transactionID }), confirmed: &visibleTransactions, on: connection)
            let visibleKeys = try await reselectKeys(keysOf, table: table, info: info, audiences: asked, on: connection)
            for audience in asked {
                let visible = visibleKeys[audience] ?? []
                let wanted = relevant?[audience]
                result[audience, default: .none].changes += rowIndices.filter {
                    (wanted?.contains($0) ?? true) && (keyOf[$0].map { visible.contains($0.joined) } ?? false)
                }
            }
        }
        for audience in distinct { result[audience, default: .none].changes.sort() }
        return result
    }

    /// The primary key values of `change`'s row, nil when one is missing or NULL.
    private static func key(_ change: RowChange, _ names: [String]) -> [String]? {
        var values: [String] = []
        for name in names {
            guard let value = change.record.first(where: { $0.name == name })?.text else { return nil }
            values.append(value)
        }
        return values
    }

    /// For each audience, the keys (joined by NUL) its re-select of its own `keys` returned.
    private func reselectKeys(
        _ keys: [Audience: [[String]]], table: TableKey, info: TableInfo, audiences: [Audience], on connection: PostgresConnection
    ) async throws -> [Audience: Set<String>] {
        let qualified = SQL.ident(table.schema) + "." + SQL.ident(table.table)
        let selected = info.primaryKey.map { "t." + SQL.ident($0.name) + "::text" }.joined(separator: ", ")
        let select: String
        if info.primaryKey.count == 1 {
            let key = info.primaryKey[0]
            select = "SELECT \(selected) FROM \(qualified) t WHERE t.\(SQL.ident(key.name)) = ANY($1::\(key.type)[])"
        } else {
            let tuple = info.primaryKey.map { "t." + SQL.ident($0.name) }.joined(separator: ", ")
            let unnest = info.primaryKey.enumerated().map { "$\($0.offset + 1)::\($0.element.type)[]" }.joined(separator: ", ")
            select = "SELECT \(selected) FROM \(qualified) t WHERE (\(tuple)) IN (SELECT * FROM unnest(\(unnest)))"
        }
        func keyParameters(_ audience: Audience) -> [String?] {
            let mine = keys[audience] ?? []
            return (0..<info.primaryKey.count).map { column in SQL.textArray(mine.map { $0[column] }) }
        }
        let setting = "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)"
        func steps(_ group: ArraySlice<Audience>) -> [(sql: String, parameters: [String?])] {
            var steps: [(sql: String, parameters: [String?])] = [("BEGIN READ ONLY", [])]
            for audience in group {
                steps.append((setting, [audience.role, audience.claims]))
                steps.append((select, keyParameters(audience)))
            }
            steps.append(("COMMIT", []))
            return steps
        }
        func read(_ results: [PostgresRows], _ group: ArraySlice<Audience>, into visible: inout [Audience: Set<String>]) {
            for (offset, audience) in group.enumerated() {
                let rows = results[2 + 2 * offset].rows
                visible[audience] = Set(rows.map { $0.map { $0 ?? "" }.joined(separator: "\u{0}") })
            }
        }
        var visible: [Audience: Set<String>] = [:]
        var start = audiences.startIndex
        while start < audiences.endIndex {
            let group = audiences[start..<min(start + audiencesPerRoundTrip, audiences.endIndex)]
            start = group.endIndex
            let batch = steps(group)
            count(statements: batch.count)
            do {
                read(try await connection.pipeline(batch), group, into: &visible)
            } catch let error as PostgresError where !error.isConnectionFailure {
                // One audience's claims broke its statement (say `sub` is not a uuid) and the
                // transaction with it: judge each alone; one that fails sees nothing.
                for audience in group {
                    let alone = [audience][...]
                    let single = steps(alone)
                    count(statements: single.count)
                    if let results = try? await connection.pipeline(single) { read(results, alone, into: &visible) }
                }
            }
        }
        return visible
    }

    /// Waits (a few milliseconds at most, in practice) until the transactions `xids` are
    /// visible to new snapshots. The walsender may stream a transaction the moment its commit
    /// record is flushed, a little before the server takes it out of the running
    /// transactions: a re-select in that window does not find the row and would judge it
    /// invisible to everyone, losing the change (seen under a steady stream of small
    /// transactions). Gives up after ``visibilityWait`` and lets the re-select decide.
    /// `confirmed` collects the transactions found visible (they stay visible).
    private func waitUntilVisible(_ xids: Set<UInt32>, confirmed: inout Set<UInt32>, on connection: PostgresConnection) async throws {
        let pending = xids.subtracting(confirmed).subtracting([0])
        guard !pending.isEmpty else { return }
        let deadline = ContinuousClock.now + Self.visibilityWait
        while true {
            let text = try await connection.query("SELECT txid_current_snapshot()::text").scalar ?? ""
            count(statements: 1)
            guard let snapshot = TransactionSnapshot(text) else { return }
            if pending.allSatisfy(snapshot.sees) {
                confirmed.formUnion(pending)
                return
            }
            guard ContinuousClock.now < deadline else { return }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// How long ``waitUntilVisible(_:on:)`` waits for committed transactions to show.
    static let visibilityWait: Duration = .seconds(2)

    private func count(statements: Int) {
        caches.withLock { caches in
            caches.statements += statements
            caches.roundTrips += 1
        }
    }

    private func tableInfo(_ table: TableKey, on connection: PostgresConnection) async throws -> TableInfo {
        if let cached = caches.withLock({ $0.tables[table] }) { return cached }
        let rows = try await connection.query(
            """
            SELECT c.relrowsecurity::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
            LEFT JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
            WHERE n.nspname = $1 AND c.relname = $2 ORDER BY k.ord
            """, [table.schema, table.table])
        count(statements: 1)
        var info = TableInfo(exists: !rows.rows.isEmpty, rowLevelSecurity: rows.rows.first?[0] == "true", primaryKey: [])
        for row in rows.rows { if let name = row[1], let type = row[2] { info.primaryKey.append((name, type)) } }
        caches.withLock { $0.tables[table] = info }
        return info
    }

    private func roleAccess(_ role: String, _ table: TableKey, on connection: PostgresConnection) async throws -> RoleAccess {
        let key = RoleTableKey(role: role, table: table)
        if let cached = caches.withLock({ $0.access[key] }) { return cached }
        let rows = try await connection.query(
            """
            SELECT r.rolbypassrls::text, a.attname::text,
                   (has_schema_privilege(r.oid, n.oid, 'USAGE') AND has_column_privilege(r.oid, c.oid, a.attnum, 'SELECT'))::text,
                   EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
                           AND EXISTS (SELECT 1 FROM unnest(p.polroles) AS pr(oid) WHERE pr.oid = 0 OR pg_has_role(r.oid, pr.oid, 'USAGE')))::text
            FROM pg_roles r
            CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE r.rolname = $1 AND n.nspname = $2 AND c.relname = $3
            """, [role, table.schema, table.table])
        count(statements: 1)
        let access = RoleAccess(
            bypassesRowLevelSecurity: rows.rows.first?[0] == "true",
            columns: Set(rows.rows.filter { $0[2] == "true" }.compactMap { $0[1] }),
            hasSelectPolicy: rows.rows.first?[3] == "true")
        caches.withLock { $0.access[key] = access }
        return access
    }
}

/// A `txid_current_snapshot()` (`xmin:xmax:xip,...`, 64-bit transaction ids): whether a
/// committed transaction, named by its 32-bit xid, is visible in it.
struct TransactionSnapshot: Equatable {
    let xmin: UInt64
    let xmax: UInt64
    let running: Set<UInt64>

    /// The snapshot in `text`; nil when it does not read as one.
    init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let xmin = UInt64(parts[0]), let xmax = UInt64(parts[1]), xmin <= xmax else { return nil }
        var running = Set<UInt64>()
        for item in parts[2].split(separator: ",") {
            guard let xid = UInt64(item) else { return nil }
            running.insert(xid)
        }
        self.xmin = xmin
        self.xmax = xmax
        self.running = running
    }

    /// Whether the committed transaction `xid` (32 bits, as the WAL names it) shows in this
    /// snapshot: it is older than every running transaction, or finished before the snapshot.
    func sees(_ xid: UInt32) -> Bool {
        // The full id: the xid in xmax's epoch, or the epoch before when that would be past xmax.
        var full = (xmax & 0xFFFF_FFFF_0000_0000) | UInt64(xid)
        if full >= xmax {
            guard full >= 1 << 32 else { return false }
            full -= 1 << 32
        }
        return full < xmin || !running.contains(full)
    }
}
