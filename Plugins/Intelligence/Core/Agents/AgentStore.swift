import Foundation
import MeltyPostgres

/// The agents' tables in the portal database (schema `intelligence`), through the pool of
/// the database's owner role: runs, steps, approvals and memories.
public struct AgentStore: Sendable {
    /// The idempotent DDL of the agents' tables. Portal roles other than the owner get no
    /// access: runs hold callers' claims, and agents reach them only through this store.
    public static let schema = """
        CREATE TABLE IF NOT EXISTS intelligence.agent_runs (
            id uuid PRIMARY KEY,
            parent_id uuid REFERENCES intelligence.agent_runs (id) ON DELETE CASCADE,
            root_id uuid NOT NULL,
            parent_call_id text,
            goal text NOT NULL,
            tools text[] NOT NULL,
            status text NOT NULL CHECK (status IN ('queued', 'running', 'waiting_approval', 'succeeded', 'failed', 'cancelled', 'budget_exceeded')),
            reason text,
            budget_steps bigint NOT NULL,
            budget_tokens bigint NOT NULL,
            budget_wall_ms bigint NOT NULL,
            used_steps bigint NOT NULL DEFAULT 0,
            used_tokens bigint NOT NULL DEFAULT 0,
            used_wall_ms bigint NOT NULL DEFAULT 0,
            caller_role text NOT NULL,
            caller_subject text,
            caller_claims text NOT NULL DEFAULT '{}',
            answer text,
            owner text,
            lease_until timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            UNIQUE (parent_id, parent_call_id)
        );
        CREATE INDEX IF NOT EXISTS agent_runs_by_root ON intelligence.agent_runs (root_id);
        CREATE INDEX IF NOT EXISTS agent_runs_by_subject ON intelligence.agent_runs (caller_subject, created_at DESC);
        CREATE INDEX IF NOT EXISTS agent_runs_active ON intelligence.agent_runs (lease_until) WHERE status IN ('queued', 'running');
        CREATE TABLE IF NOT EXISTS intelligence.agent_steps (
            run_id uuid NOT NULL REFERENCES intelligence.agent_runs (id) ON DELETE CASCADE,
            seq integer NOT NULL,
            kind text NOT NULL CHECK (kind IN ('plan', 'tool_call', 'observation', 'answer', 'sub_agent', 'approval', 'error')),
            content jsonb NOT NULL,
            tokens bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (run_id, seq)
        );
        CREATE TABLE IF NOT EXISTS intelligence.agent_approvals (
            id uuid PRIMARY KEY,
            run_id uuid NOT NULL REFERENCES intelligence.agent_runs (id) ON DELETE CASCADE,
            call_id text NOT NULL,
            statement text NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'executing', 'executed')),
            decided_by text,
            decided_at timestamptz,
            result jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (run_id, call_id)
        );
        CREATE TABLE IF NOT EXISTS intelligence.agent_memories (
            caller_class text NOT NULL DEFAULT 'user',
            subject text NOT NULL DEFAULT '',
            key text NOT NULL,
            text text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE intelligence.agent_memories ADD COLUMN IF NOT EXISTS caller_class text NOT NULL DEFAULT 'user';
        ALTER TABLE intelligence.agent_memories DROP CONSTRAINT IF EXISTS agent_memories_pkey;
        CREATE UNIQUE INDEX IF NOT EXISTS agent_memories_by_class ON intelligence.agent_memories (caller_class, subject, key);
        REVOKE ALL ON intelligence.agent_runs, intelligence.agent_steps, intelligence.agent_approvals, intelligence.agent_memories FROM PUBLIC;
        DO $$
        DECLARE portal_role text;
        BEGIN
            FOR portal_role IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role', 'authenticator') LOOP
                EXECUTE format('REVOKE ALL ON intelligence.agent_runs, intelligence.agent_steps, intelligence.agent_approvals, intelligence.agent_memories FROM %I',
                    portal_role);
            END LOOP;
        END
        $$;
        """

    private static let runColumns = """
        id, parent_id, root_id, parent_call_id, goal, tools, status, reason, budget_steps, budget_tokens, budget_wall_ms,
        used_steps, used_tokens, used_wall_ms, caller_role, caller_subject, caller_claims, answer, owner,
        created_at::text AS created_at, updated_at::text AS updated_at, finished_at::text AS finished_at
        """

    /// The owner role's pool of the portal database.
    public let pool: PostgresPool

    /// A store on `pool`.
    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// What a new run starts with.
    public struct NewRun: Sendable {
        /// Its goal.
        public var goal: String
        /// Its tools.
        public var tools: [String]
        /// Its budget.
        public var budget: AgentBudget
        /// Its caller.
        public var caller: AgentCaller
        /// Its parent and the parent's tool call (nil for a root run).
        public var parent: (id: UUID, rootID: UUID, callID: String)?

        /// A new run with these fields.
        public init(goal: String, tools: [String], budget: AgentBudget, caller: AgentCaller, parent: (id: UUID, rootID: UUID, callID: String)? = nil) {
            self.goal = goal
            self.tools = tools
            self.budget = budget
            self.caller = caller
            self.parent = parent
        }
    }

    // MARK: - Runs

    /// Stores a new run in `queued`, leased to `owner`.
    public func create(_ new: NewRun, owner: String, leaseSeconds: Int) async throws -> AgentRunRecord {
        let id = UUID()
        let rows = try await pool.run { connection in
            try await connection.preparedQuery(
                """
                INSERT INTO intelligence.agent_runs (id, parent_id, root_id, parent_call_id, goal, tools, status, budget_steps, budget_tokens, budget_wall_ms,
                    caller_role, caller_subject, caller_claims, owner, lease_until)
                VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5, $6::text[], 'queued', $7::bigint, $8::bigint, $9::bigint, $10, $11, $12, $13,
                    now() + make_interval(secs => $14::int))
                RETURNING \(Self.runColumns)
                """,
                [
                    Self.text(id), new.parent.map { Self.text($0.id) }, Self.text(new.parent?.rootID ?? id), new.parent?.callID, new.goal,
                    SQL.textArray(new.tools), String(new.budget.steps), String(new.budget.tokens), String(new.budget.wallClockMilliseconds),
                    new.caller.role, new.caller.subject, new.caller.claimsJSON, owner, String(leaseSeconds),
                ])
        }
        guard let record = try Self.runs(rows).first else { throw AgentStoreError.corrupt("the new run was not returned") }
        return record
    }

    /// The run `id`, or nil.
    public func run(_ id: UUID) async throws -> AgentRunRecord? {
        let rows = try await pool.run { try await $0.preparedQuery("SELECT \(Self.runColumns) FROM intelligence.agent_runs WHERE id = $1::uuid", [Self.text(id)]) }
        return try Self.runs(rows).first
    }

    /// The child `parent` spawned for its tool call `callID`, or nil.
    public func child(of parent: UUID, callID: String) async throws -> AgentRunRecord? {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                "SELECT \(Self.runColumns) FROM intelligence.agent_runs WHERE parent_id = $1::uuid AND parent_call_id = $2", [Self.text(parent), callID])
        }
        return try Self.runs(rows).first
    }

    /// Root runs, newest first: those of `subject` (nil: everyone's), at most `limit`.
    public func rootRuns(subject: String?, everyone: Bool, limit: Int) async throws -> [AgentRunRecord] {
        let rows = try await pool.run { connection in
            if everyone {
                return try await connection.preparedQuery(
                    "SELECT \(Self.runColumns) FROM intelligence.agent_runs WHERE parent_id IS NULL ORDER BY created_at DESC LIMIT $1::int", [String(limit)])
            }
            return try await connection.preparedQuery(
                "SELECT \(Self.runColumns) FROM intelligence.agent_runs WHERE parent_id IS NULL AND caller_subject = $1 ORDER BY created_at DESC LIMIT $2::int",
                [subject ?? "", String(limit)])
        }
        return try Self.runs(rows)
    }

    /// How many runs lie above `id` (0 for a root run), counted up to `limit`.
    public func depth(of id: UUID, limit: Int) async throws -> Int {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                """
                WITH RECURSIVE up AS (
                    SELECT parent_id, 0 AS depth FROM intelligence.agent_runs WHERE id = $1::uuid
                    UNION ALL SELECT run.parent_id, up.depth + 1 FROM intelligence.agent_runs run JOIN up ON run.id = up.parent_id WHERE up.depth < $2::int
                )
                SELECT max(depth) FROM up
                """, [Self.text(id), String(limit)])
        }
        return rows.scalar.flatMap { Int($0) } ?? 0
    }

    /// `id` and every run below it, parents before children.
    public func tree(of id: UUID, limit: Int) async throws -> [AgentRunRecord] {
        let rows = try await pool.run { connection in
            try await connection.preparedQuery(
                """
                WITH RECURSIVE tree AS (
                    SELECT id, 0 AS depth FROM intelligence.agent_runs WHERE id = $1::uuid
                    UNION ALL SELECT child.id, tree.depth + 1 FROM intelligence.agent_runs child JOIN tree ON child.parent_id = tree.id WHERE tree.depth < 32
                )
                SELECT \(Self.runColumns) FROM intelligence.agent_runs WHERE id IN (SELECT id FROM tree) ORDER BY created_at LIMIT $2::int
                """, [Self.text(id), String(limit)])
        }
        return try Self.runs(rows)
    }

    /// Marks a queued run running (no change otherwise); true when it is running now (and,
    /// with `owner`, leased to it).
    public func start(_ id: UUID, owner: String? = nil) async throws -> Bool {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                """
                UPDATE intelligence.agent_runs SET status = 'running', updated_at = now()
                WHERE id = $1::uuid AND status IN ('queued', 'running') AND ($2::text IS NULL OR owner = $2::text) RETURNING id
                """, [Self.text(id), owner])
        }
        return !rows.rows.isEmpty
    }

    /// Saves `usage` of a working run and renews its lease; with `owner`, only while the run
    /// is leased to it. False when nothing was saved (ended, or another instance took it over).
    @discardableResult
    public func save(_ id: UUID, usage: AgentUsage, leaseSeconds: Int, owner: String? = nil) async throws -> Bool {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                """
                UPDATE intelligence.agent_runs SET used_steps = $2::bigint, used_tokens = $3::bigint, used_wall_ms = $4::bigint, updated_at = now(),
                    lease_until = now() + make_interval(secs => $5::int)
                WHERE id = $1::uuid AND status IN ('queued', 'running') AND ($6::text IS NULL OR owner = $6::text) RETURNING id
                """,
                [Self.text(id), String(usage.steps), String(usage.tokens), String(usage.wallClockMilliseconds), String(leaseSeconds), owner])
        }
        return !rows.rows.isEmpty
    }

    /// Ends a working run (`queued`, `running` or `waiting_approval`) with `status`; false when
    /// it had already ended (cancelled meanwhile) or, with `owner`, is not leased to it.
    @discardableResult
    public func finish(_ id: UUID, status: AgentRunStatus, reason: String?, answer: String?, usage: AgentUsage, owner: String? = nil) async throws -> Bool {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                """
                UPDATE intelligence.agent_runs SET status = $2, reason = $3, answer = $4, used_steps = $5::bigint, used_tokens = $6::bigint,
                    used_wall_ms = $7::bigint, updated_at = now(), finished_at = CASE WHEN $2 IN ('queued', 'running', 'waiting_approval') THEN NULL ELSE now() END,
                    owner = NULL, lease_until = NULL
                WHERE id = $1::uuid AND status IN ('queued', 'running', 'waiting_approval') AND ($8::text IS NULL OR owner = $8::text) RETURNING id
                """,
                [
                    Self.text(id), status.rawValue, reason, answer, String(usage.steps), String(usage.tokens), String(usage.wallClockMilliseconds), owner,
                ])
        }
        return !rows.rows.isEmpty
    }

    /// Cancels `id` and every unfinished run below it; returns the ids cancelled.
    public func cancel(_ id: UUID, reason: String) async throws -> [UUID] {
        let rows = try await pool.run { connection in
            try await connection.preparedQuery(
                """
                WITH RECURSIVE tree AS (
                    SELECT id, 0 AS depth FROM intelligence.agent_runs WHERE id = $1::uuid
                    UNION ALL SELECT child.id, tree.depth + 1 FROM intelligence.agent_runs child JOIN tree ON child.parent_id = tree.id WHERE tree.depth < 32
                )
                UPDATE intelligence.agent_runs SET status = 'cancelled', reason = $2, updated_at = now(), finished_at = now(), owner = NULL, lease_until = NULL
                WHERE id IN (SELECT id FROM tree) AND status IN ('queued', 'running', 'waiting_approval') RETURNING id::text
                """, [Self.text(id), reason])
        }
        return rows.rows.compactMap { $0.first.flatMap { $0 }.flatMap(UUID.init(uuidString:)) }
    }

    /// Takes over up to `limit` working runs whose lease ran out (their kernel died) and
    /// waiting runs whose approval was decided: they are leased to `owner` and returned.
    public func claimOrphans(owner: String, leaseSeconds: Int, limit: Int) async throws -> [UUID] {
        let rows = try await pool.run { connection in
            try await connection.preparedQuery(
                """
                UPDATE intelligence.agent_runs SET owner = $1, lease_until = now() + make_interval(secs => $2::int), status = 'running', updated_at = now()
                WHERE id IN (
                    SELECT id FROM intelligence.agent_runs
                    WHERE (status IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < now()))
                       OR (status = 'waiting_approval' AND NOT EXISTS (
                            SELECT 1 FROM intelligence.agent_approvals a WHERE a.run_id = agent_runs.id AND a.status = 'pending'))
                    ORDER BY created_at LIMIT $3::int FOR UPDATE SKIP LOCKED)
                RETURNING id::text
                """, [owner, String(leaseSeconds), String(limit)])
        }
        return rows.rows.compactMap { $0.first.flatMap { $0 }.flatMap(UUID.init(uuidString:)) }
    }

    /// How many working runs another owner still leases (a dead kernel's, until the lease ends).
    public func foreignLeases(owner: String) async throws -> Int {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                "SELECT count(*) FROM intelligence.agent_runs WHERE status IN ('queued', 'running') AND owner IS DISTINCT FROM $1 AND lease_until >= now()",
                [owner])
        }
        return Int(rows.scalar ?? "0") ?? 0
    }

    /// Renews the lease of every working run `owner` holds.
    public func renewLeases(owner: String, leaseSeconds: Int) async throws {
        try await pool.run {
            try await $0.preparedQuery(
                "UPDATE intelligence.agent_runs SET lease_until = now() + make_interval(secs => $2::int) WHERE owner = $1 AND status IN ('queued', 'running')",
                [owner, String(leaseSeconds)])
        }
    }

    /// Puts a running run in `waiting_approval` (its task ends; an approval resumes it).
    @discardableResult
    public func wait(_ id: UUID, reason: String, usage: AgentUsage, owner: String? = nil) async throws -> Bool {
        try await finish(id, status: .waitingApproval, reason: reason, answer: nil, usage: usage, owner: owner)
    }

    // MARK: - Steps

    /// Appends a step (its `seq` is the next free one; concurrent appends retry).
    @discardableResult
    public func append(_ runID: UUID, kind: AgentStepKind, contentJSON: String, tokens: Int = 0) async throws -> AgentStepRecord {
        var attempt = 0
        while true {
            do {
                let rows = try await pool.run {
                    try await $0.preparedQuery(
                        """
                        INSERT INTO intelligence.agent_steps (run_id, seq, kind, content, tokens)
                        SELECT $1::uuid, coalesce(max(seq), 0) + 1, $2, $3::jsonb, $4::bigint FROM intelligence.agent_steps WHERE run_id = $1::uuid
                        RETURNING seq, created_at::text
                        """, [Self.text(runID), kind.rawValue, contentJSON, String(tokens)])
                }
                guard let seq = rows.value("seq").flatMap({ Int($0) }) else { throw AgentStoreError.corrupt("the new step was not returned") }
                return AgentStepRecord(runID: runID, seq: seq, kind: kind, contentJSON: contentJSON, tokens: tokens, createdAt: rows.value("created_at") ?? "")
            } catch let error as PostgresError where error.sqlState == "23505" && attempt < 8 {
                attempt += 1
            }
        }
    }

    /// Steps of `runIDs` after `seq` (per run), in order, at most `limit`.
    public func steps(of runIDs: [UUID], after seq: Int = 0, limit: Int) async throws -> [AgentStepRecord] {
        guard !runIDs.isEmpty else { return [] }
        let rows = try await pool.run {
            try await $0.preparedQuery(
                """
                SELECT run_id::text, seq, kind, content::text, tokens, created_at::text FROM intelligence.agent_steps
                WHERE run_id = ANY($1::uuid[]) AND seq > $2::int ORDER BY created_at, run_id, seq LIMIT $3::int
                """, [SQL.textArray(runIDs.map(Self.text)), String(seq), String(limit)])
        }
        return try Self.steps(rows)
    }

    /// Step rows (`run_id, seq, kind, content, tokens, created_at`) as records.
    static func steps(_ rows: PostgresRows) throws -> [AgentStepRecord] {
        try rows.rows.map { row in
            guard row.count == 6, let run = row[0].flatMap(UUID.init(uuidString:)), let seq = row[1].flatMap({ Int($0) }),
                let kind = row[2].flatMap(AgentStepKind.init(rawValue:))
            else { throw AgentStoreError.corrupt("a step row does not read") }
            return AgentStepRecord(runID: run, seq: seq, kind: kind, contentJSON: row[3] ?? "{}", tokens: row[4].flatMap { Int($0) } ?? 0, createdAt: row[5] ?? "")
        }
    }

    /// Every step of run `id` in `seq` order, read in pages of `page`.
    public func allSteps(of id: UUID, page: Int) async throws -> [AgentStepRecord] {
        var steps: [AgentStepRecord] = []
        while true {
            let after = steps.last?.seq ?? 0
            let rows = try await pool.run {
                try await $0.preparedQuery(
                    """
                    SELECT run_id::text, seq, kind, content::text, tokens, created_at::text FROM intelligence.agent_steps
                    WHERE run_id = $1::uuid AND seq > $2::int ORDER BY seq LIMIT $3::int
                    """, [Self.text(id), String(after), String(max(1, page))])
            }
            let read = try Self.steps(rows)
            steps.append(contentsOf: read)
            if read.count < max(1, page) { return steps }
        }
    }

    // MARK: - Approvals

    /// The approval of `runID`'s call `callID`, or nil.
    public func approval(run runID: UUID, callID: String) async throws -> AgentApprovalRecord? {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                "SELECT id::text, run_id::text, call_id, statement, status, decided_by, result::text FROM intelligence.agent_approvals WHERE run_id = $1::uuid AND call_id = $2",
                [Self.text(runID), callID])
        }
        return try Self.approvals(rows).first
    }

    /// The approvals of `runIDs`.
    public func approvals(of runIDs: [UUID]) async throws -> [AgentApprovalRecord] {
        guard !runIDs.isEmpty else { return [] }
        let rows = try await pool.run {
            try await $0.preparedQuery(
                """
                SELECT id::text, run_id::text, call_id, statement, status, decided_by, result::text FROM intelligence.agent_approvals
                WHERE run_id = ANY($1::uuid[]) ORDER BY created_at
                """, [SQL.textArray(runIDs.map(Self.text))])
        }
        return try Self.approvals(rows)
    }

    /// Asks for approval of `statement` (once per call: an existing request is returned).
    public func requestApproval(run runID: UUID, callID: String, statement: String) async throws -> AgentApprovalRecord {
        try await pool.run {
            try await $0.preparedQuery(
                """
                INSERT INTO intelligence.agent_approvals (id, run_id, call_id, statement, status) VALUES ($1::uuid, $2::uuid, $3, $4, 'pending')
                ON CONFLICT (run_id, call_id) DO NOTHING
                """, [Self.text(UUID()), Self.text(runID), callID, statement])
        }
        guard let record = try await approval(run: runID, callID: callID) else { throw AgentStoreError.corrupt("the approval was not stored") }
        return record
    }

    /// Decides a pending approval of `runIDs` (a run and its sub-agents): `approvalID` when
    /// given, else the oldest. Nil when that one (or any) is not pending.
    public func decide(runs runIDs: [UUID], approval approvalID: UUID? = nil, approve: Bool, by decider: String) async throws -> AgentApprovalRecord? {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                """
                UPDATE intelligence.agent_approvals SET status = $2, decided_by = $3, decided_at = now()
                WHERE id = (
                    SELECT id FROM intelligence.agent_approvals WHERE run_id = ANY($1::uuid[]) AND status = 'pending' AND ($4::uuid IS NULL OR id = $4::uuid)
                    ORDER BY created_at LIMIT 1 FOR UPDATE)
                RETURNING id::text, run_id::text, call_id, statement, status, decided_by, result::text
                """, [SQL.textArray(runIDs.map(Self.text)), approve ? "approved" : "rejected", decider, approvalID.map(Self.text)])
        }
        return try Self.approvals(rows).first
    }

    /// Moves an approval from `from` to `to` (with `resultJSON`); false when it was not in `from`.
    public func moveApproval(_ id: UUID, from: AgentApprovalRecord.Status, to: AgentApprovalRecord.Status, resultJSON: String? = nil) async throws -> Bool {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                "UPDATE intelligence.agent_approvals SET status = $3, result = coalesce($4::jsonb, result) WHERE id = $1::uuid AND status = $2 RETURNING id",
                [Self.text(id), from.rawValue, to.rawValue, resultJSON])
        }
        return !rows.rows.isEmpty
    }

    // MARK: - Memories

    /// Stores `text` under `key` for `subject` in `owner`'s class of notes.
    public func remember(_ owner: AgentMemoryClass, subject: String, key: String, text: String) async throws {
        try await pool.run {
            try await $0.preparedQuery(
                """
                INSERT INTO intelligence.agent_memories (caller_class, subject, key, text) VALUES ($1, $2, $3, $4)
                ON CONFLICT (caller_class, subject, key) DO UPDATE SET text = excluded.text, updated_at = now()
                """, [owner.rawValue, subject, key, text])
        }
    }

    /// Memories of `owner`'s class (those of `subjects` only, or every subject's when nil)
    /// whose key or text contains `query` (all when empty), newest first.
    public func recall(_ owner: AgentMemoryClass, subjects: [String]?, query: String, limit: Int) async throws -> [(subject: String, key: String, text: String)] {
        let rows = try await pool.run {
            try await $0.preparedQuery(
                """
                SELECT subject, key, text FROM intelligence.agent_memories
                WHERE caller_class = $1 AND ($2::text[] IS NULL OR subject = ANY($2::text[]))
                    AND ($3 = '' OR strpos(lower(key), lower($3)) > 0 OR strpos(lower(text), lower($3)) > 0)
                ORDER BY updated_at DESC LIMIT $4::int
                """, [owner.rawValue, subjects.map(SQL.textArray), query, String(limit)])
        }
        return rows.rows.map { ($0[0] ?? "", $0[1] ?? "", $0[2] ?? "") }
    }

    // MARK: - Reading rows

    static func text(_ id: UUID) -> String { id.uuidString.lowercased() }

    /// Parses a Postgres text-array output (`{a,"b c"}`).
    static func parseArray(_ text: String) -> [String] {
        guard text.hasPrefix("{"), text.hasSuffix("}") else { return [] }
        var values: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        var any = false
        for character in text.dropFirst().dropLast() {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "\"" {
                quoted.toggle()
                any = true
            } else if character == "," && !quoted {
                values.append(current)
                current = ""
                any = false
            } else {
                current.append(character)
                any = true
            }
        }
        if any || !current.isEmpty { values.append(current) }
        return values
    }

    static func runs(_ rows: PostgresRows) throws -> [AgentRunRecord] {
        try rows.rows.indices.map { index in
            func value(_ column: String) -> String? { rows.value(column, row: index) }
            func number(_ column: String) -> Int { value(column).flatMap { Int($0) } ?? 0 }
            guard let id = value("id").flatMap(UUID.init(uuidString:)), let root = value("root_id").flatMap(UUID.init(uuidString:)),
                let status = value("status").flatMap(AgentRunStatus.init(rawValue:))
            else { throw AgentStoreError.corrupt("a run row does not read") }
            return AgentRunRecord(
                id: id, parentID: value("parent_id").flatMap(UUID.init(uuidString:)), rootID: root, parentCallID: value("parent_call_id"),
                goal: value("goal") ?? "", tools: parseArray(value("tools") ?? "{}"), status: status, reason: value("reason"),
                budget: AgentBudget(steps: number("budget_steps"), tokens: number("budget_tokens"), wallClockMilliseconds: number("budget_wall_ms")),
                usage: AgentUsage(steps: number("used_steps"), tokens: number("used_tokens"), wallClockMilliseconds: number("used_wall_ms")),
                caller: AgentCaller(role: value("caller_role") ?? "anon", subject: value("caller_subject"), claimsJSON: value("caller_claims") ?? "{}"),
                answer: value("answer"), createdAt: value("created_at") ?? "", updatedAt: value("updated_at") ?? "", finishedAt: value("finished_at"), owner: value("owner"))
        }
    }

    static func approvals(_ rows: PostgresRows) throws -> [AgentApprovalRecord] {
        try rows.rows.map { row in
            guard row.count == 7, let id = row[0].flatMap(UUID.init(uuidString:)), let run = row[1].flatMap(UUID.init(uuidString:)),
                let status = row[4].flatMap(AgentApprovalRecord.Status.init(rawValue:))
            else { throw AgentStoreError.corrupt("an approval row does not read") }
            return AgentApprovalRecord(id: id, runID: run, callID: row[2] ?? "", statement: row[3] ?? "", status: status, decidedBy: row[5], resultJSON: row[6])
        }
    }
}
