import AgentCore
import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres
import ModelProvider

/// The agents' tools in one portal: structured table reads under the caller's role, free SQL
/// for `service_role` and admin runs only (reads directly, writes only after an approval),
/// memories in the portal database, vector search, REST and Edge through the kernel, and
/// sub-agents.
struct PortalToolbox: AgentToolbox {
    let context: IntelligencePortal
    let agents: PortalAgents

    /// Every tool a run may be given, by name.
    static let all: [String: ToolSpec] = Dictionary(
        uniqueKeysWithValues: [
            ToolSpec(
                name: "sql_read",
                description: "Runs one read-only SQL statement (SELECT, WITH, VALUES, TABLE) as the user who started the run; row-level security applies. "
                    + "Returns the columns and at most a limited number of rows.",
                parametersJSON: #"{"type":"object","properties":{"sql":{"type":"string","description":"one SQL query"}},"required":["sql"]}"#),
            ToolSpec(
                name: "table_read",
                description: "Reads rows of one table or view as the user who started the run; row-level security applies. "
                    + "Filters compare a column with a value (ops eq, neq, lt, lte, gt, gte, like, ilike, is_null, not_null, in); "
                    + "returns the columns and at most a limited number of rows.",
                parametersJSON: """
                    {"type":"object","properties":{"table":{"type":"string","description":"a table or view name, or schema.name"},\
                    "columns":{"type":"array","items":{"type":"string"}},\
                    "filters":{"type":"array","items":{"type":"object","properties":{"column":{"type":"string"},\
                    "op":{"type":"string","enum":["eq","neq","lt","lte","gt","gte","like","ilike","is_null","not_null","in"]},\
                    "value":{"description":"a string, number or boolean; an array for in"}},"required":["column","op"]}},\
                    "order":{"type":"array","items":{"type":"object","properties":{"column":{"type":"string"},\
                    "direction":{"type":"string","enum":["asc","desc"]}},"required":["column"]}},\
                    "limit":{"type":"integer","minimum":1}},"required":["table"]}
                    """),
            ToolSpec(
                name: "sql_write",
                description: "Asks to run one SQL statement that changes data, as the user who started the run. It runs only after an "
                    + "administrator approves it; the result (or the refusal) comes back as the observation.",
                parametersJSON: #"{"type":"object","properties":{"sql":{"type":"string","description":"one SQL statement"}},"required":["sql"]}"#),
            ToolSpec(
                name: "remember",
                description: "Stores a note under a key for later runs of the same caller (a user's notes stay that user's; "
                    + "service_role and admin runs share theirs).",
                parametersJSON:
                    #"{"type":"object","properties":{"key":{"type":"string"},"text":{"type":"string"},"scope":{"type":"string","enum":["user","portal"]}},"required":["key","text"]}"#
            ),
            ToolSpec(
                name: "recall",
                description: "Finds stored notes whose key or text contains the query (an empty query lists the newest).",
                parametersJSON: #"{"type":"object","properties":{"query":{"type":"string"}},"required":["query"]}"#),
            ToolSpec(
                name: "rest",
                description: "Reads the portal's REST API (PostgREST syntax) as the user who started the run, e.g. "
                    + "\"notes?select=title&order=title&limit=10\". GET only; row-level security applies.",
                parametersJSON: #"{"type":"object","properties":{"path":{"type":"string","description":"table or view with its query"}},"required":["path"]}"#),
            ToolSpec(
                name: "edge_invoke",
                description: "Invokes one of the portal's Edge functions (POST with a JSON body) as the user who started the run; "
                    + "returns its status and body.",
                parametersJSON: #"{"type":"object","properties":{"name":{"type":"string"},"body":{"description":"any JSON value"}},"required":["name"]}"#),
            ToolSpec(
                name: "vector_search",
                description: "Finds the entries of one of the portal's vector collections nearest to a text (embedded by the portal's model "
                    + "provider) or a vector, optionally filtered by metadata and combined with full-text search; the collection must be "
                    + "readable by the user who started the run.",
                parametersJSON: """
                    {"type":"object","properties":{"collection":{"type":"string"},"text":{"type":"string"},\
                    "vector":{"type":"array","items":{"type":"number"}},"k":{"type":"integer","minimum":1,"maximum":100},\
                    "filter":{"type":"object","description":"metadata filter, e.g. {\\"topic\\": \\"billing\\"}"},"hybrid":{"type":"boolean"}},\
                    "required":["collection"]}
                    """),
            ToolSpec(
                name: AgentLoop.spawnToolName,
                description: "Starts a sub-agent on a sub-goal and returns its answer. Its budget comes out of yours; sub-agents started in the "
                    + "same turn run concurrently and share your remaining budget.",
                parametersJSON: """
                    {"type":"object","properties":{"goal":{"type":"string"},"tools":{"type":"array","items":{"type":"string"}},\
                    "budget":{"type":"object","properties":{"steps":{"type":"integer"},"tokens":{"type":"integer"},"wall_clock_seconds":{"type":"integer"}}}},\
                    "required":["goal"]}
                    """),
        ].map { ($0.name, $0) })

    /// Tools that run the model's SQL text: only for callers who may already run any SQL
    /// (`service_role`, aal2 admins). A user's run obeys the user's goal, so for a user they
    /// would be arbitrary SQL under `authenticator`, which cannot be made safe.
    static let privilegedTools: Set<String> = ["sql_read", "sql_write"]

    /// Whether runs of `caller` may use ``privilegedTools`` (admins act as `service_role`).
    static func isPrivileged(_ caller: AgentCaller) -> Bool { caller.role == "service_role" }

    /// The tools a run gets when it names none.
    static func defaultTools(privileged: Bool) -> [String] {
        [privileged ? "sql_read" : "table_read", "remember", "recall", AgentLoop.spawnToolName]
    }

    func specs(for names: [String]) -> [ToolSpec] { names.compactMap { Self.all[$0] } }

    func call(_ call: ToolCall, context toolContext: AgentToolContext) async throws -> AgentToolOutcome {
        let run = toolContext.run
        guard run.tools.contains(call.name), Self.all[call.name] != nil else {
            return .observation("the tool \"\(call.name)\" is not available to this run; use one of: \(run.tools.joined(separator: ", "))", ok: false, charged: AgentUsage())
        }
        // Runs stored before users lost the SQL tools may still list them.
        if Self.privilegedTools.contains(call.name) && !Self.isPrivileged(run.caller) {
            return Self.failure("\(call.name) is only for runs of service_role or an admin; use table_read")
        }
        guard let arguments = JSONValue.object(json: Array(call.arguments.utf8)) else {
            return .observation("the arguments are not a JSON object", ok: false, charged: AgentUsage())
        }
        switch call.name {
        case "sql_read":
            guard let sql = arguments["sql"]?.stringValue else { return Self.failure("sql_read needs a string \"sql\"") }
            return try await sqlRead(sql, run: run)
        case "sql_write":
            guard let sql = arguments["sql"]?.stringValue else { return Self.failure("sql_write needs a string \"sql\"") }
            return try await sqlWrite(sql, call: call, run: run)
        case "table_read":
            return try await tableRead(arguments, run: run)
        case "remember":
            guard let key = arguments["key"]?.stringValue, let text = arguments["text"]?.stringValue, (1...200).contains(key.count), text.utf8.count <= 16_384
            else { return Self.failure("remember needs \"key\" (1 to 200 characters) and \"text\" (at most 16 KiB)") }
            return try await remember(key: key, text: text, scope: arguments["scope"]?.stringValue, run: run)
        case "rest":
            guard let path = arguments["path"]?.stringValue else { return Self.failure("rest needs a string \"path\"") }
            return try await rest(path, run: run)
        case "edge_invoke":
            guard let name = arguments["name"]?.stringValue, Self.isFunctionName(name) else {
                return Self.failure("edge_invoke needs a function \"name\" of 1 to 64 letters, digits, _ or -")
            }
            let body = (try? JSONValue.serialize(arguments["body"] ?? .null)) ?? Array("null".utf8)
            guard body.count <= 65_536 else { return Self.failure("the body must be at most 64 KiB of JSON") }
            return try await throughKernel(run: run, method: "POST", path: "functions/v1/\(name)", body: body)
        case "vector_search":
            return await vectorSearch(arguments, run: run)
        case "recall":
            let query = String((arguments["query"]?.stringValue ?? "").prefix(200))
            return try await recall(query, run: run)
        default:
            return try await spawn(arguments, call: call, context: toolContext)
        }
    }

    // MARK: - Memories

    /// Stores a note in the caller's class: a user's own notes (`scope: portal` is refused,
    /// it would reach other callers), or the admin notes of `service_role` and admin runs.
    private func remember(key: String, text: String, scope: String?, run: AgentRunRecord) async throws -> AgentToolOutcome {
        if Self.isPrivileged(run.caller) {
            try await agents.store.remember(.admin, subject: "", key: key, text: text)
            return .observation("remembered \"\(key)\" for service_role and admin runs", ok: true, charged: AgentUsage())
        }
        guard let subject = run.caller.subject, !subject.isEmpty else { return Self.failure("this run has no user to remember for") }
        guard scope == nil || scope == "user" else {
            return Self.failure("a user's run remembers only for that user (scope \"user\"); portal-wide notes are for service_role and admin runs")
        }
        try await agents.store.remember(.user, subject: subject, key: key, text: text)
        return .observation("remembered \"\(key)\" for this user", ok: true, charged: AgentUsage())
    }

    /// The caller's notes: a user's own, or the admin notes (never a user-written one, so a
    /// user cannot plant instructions for an admin run).
    private func recall(_ query: String, run: AgentRunRecord) async throws -> AgentToolOutcome {
        let found: [(subject: String, key: String, text: String)]
        let scope: String
        if Self.isPrivileged(run.caller) {
            found = try await agents.store.recall(.admin, subjects: nil, query: query, limit: 20)
            scope = "admin"
        } else if let subject = run.caller.subject, !subject.isEmpty {
            found = try await agents.store.recall(.user, subjects: [subject], query: query, limit: 20)
            scope = "user"
        } else {
            found = []
            scope = "user"
        }
        let list: [JSONValue] = found.map { .object(["key": .string($0.key), "text": .string($0.text), "scope": .string(scope)]) }
        return .observation(AgentJSON.text(.array(list)), ok: true, charged: AgentUsage())
    }

    // MARK: - Vectors

    /// A Knowledge Mesh query as the run's caller: what the `/vectors/v1` route would answer
    /// that caller (an admin run reads as `service_role`).
    private func vectorSearch(_ arguments: [String: JSONValue], run: AgentRunRecord) async -> AgentToolOutcome {
        guard let name = arguments["collection"]?.stringValue, !name.isEmpty else { return Self.failure("vector_search needs a \"collection\" name") }
        var body = arguments
        body["collection"] = nil
        if body["k"] == nil { body["k"] = .number(5) }
        let role = run.caller.role == "admin" ? "service_role" : run.caller.role
        do {
            let answer = try await VectorRoutes(context: context).search(collection: name, role: role, body: body)
            return .observation(AgentJSON.text(answer), ok: true, charged: AgentUsage())
        } catch let refusal as VectorInput {
            let message = JSONValue.object(json: refusal.response.body)?["message"]?.stringValue ?? "refused (\(refusal.response.status))"
            return Self.failure("vector_search: \(message)")
        } catch {
            return Self.failure("vector_search: \(error)")
        }
    }

    // MARK: - SQL

    /// A structured read: the plugin builds the SQL (quoted names, values as parameters) and
    /// runs it read-only under the caller's role and claims, so row-level security applies
    /// and no text of the model reaches the SQL.
    private func tableRead(_ arguments: [String: JSONValue], run: AgentRunRecord) async throws -> AgentToolOutcome {
        let query: AgentTableQuery
        switch AgentTableQuery.build(arguments, rowLimit: agents.settings.sqlRowLimit, schemas: agents.settings.tableSchemas) {
        case .success(let built): query = built
        case .failure(let refusal): return Self.failure("table_read: \(refusal.message)")
        }
        do {
            let rows = try await underCaller(run.caller, readOnly: true) { connection in try await connection.query(query.sql, query.parameters) }
            return .observation(Self.describe(rows, limit: query.limit), ok: true, charged: AgentUsage())
        } catch let error as PostgresError {
            return Self.failure("the read failed: \(error.message)")
        }
    }

    private func sqlRead(_ sql: String, run: AgentRunRecord) async throws -> AgentToolOutcome {
        let trimmed = sql.trimmingCharacters(in: .whitespacesAndNewlines.union(CharacterSet(charactersIn: ";")))
        guard !trimmed.isEmpty, trimmed.utf8.count <= 20_000 else { return Self.failure("sql must hold one statement of at most 20,000 bytes") }
        let limit = agents.settings.sqlRowLimit
        let wrapped = "SELECT * FROM (\n\(trimmed)\n) AS agent_query LIMIT \(limit + 1)"
        do {
            let rows = try await underCaller(run.caller, readOnly: true) { connection in try await connection.query(wrapped) }
            return .observation(Self.describe(rows, limit: limit), ok: true, charged: AgentUsage())
        } catch let error as PostgresError {
            return Self.failure("the statement failed: \(error.message)\(error.hint.map { " (hint: \($0))" } ?? "")")
        }
    }

    private func sqlWrite(_ sql: String, call: ToolCall, run: AgentRunRecord) async throws -> AgentToolOutcome {
        let trimmed = sql.trimmingCharacters(in: .whitespacesAndNewlines.union(CharacterSet(charactersIn: ";")))
        guard !trimmed.isEmpty, trimmed.utf8.count <= 20_000 else { return Self.failure("sql must hold one statement of at most 20,000 bytes") }
        let store = agents.store
        var approval = try await store.approval(run: run.id, callID: call.id)
        if approval == nil {
            let created = try await store.requestApproval(run: run.id, callID: call.id, statement: trimmed)
            let step = try await store.append(
                run.id, kind: .approval,
                contentJSON: AgentJSON.text([
                    "approval_id": .string(created.id.uuidString.lowercased()), "call_id": .string(call.id), "status": "pending",
                    "statement": .string(String(trimmed.prefix(2000))),
                ]))
            try await agents.audit(step)
            approval = created
        }
        guard let approval else { return Self.failure("the approval could not be stored") }
        switch approval.status {
        case .pending:
            return .awaitingApproval("a SQL write waits for approval (approval \(approval.id.uuidString.lowercased()))")
        case .rejected:
            return .observation("the statement was rejected by \(approval.decidedBy ?? "an administrator"); it did not run", ok: false, charged: AgentUsage())
        case .executing:
            return .observation("the kernel stopped while the approved statement ran: its outcome is unknown; check before retrying", ok: false, charged: AgentUsage())
        case .executed:
            return .observation(approval.resultJSON ?? "{}", ok: true, charged: AgentUsage())
        case .approved:
            guard try await store.moveApproval(approval.id, from: .approved, to: .executing) else {
                return .observation("the approval changed meanwhile; the statement did not run here", ok: false, charged: AgentUsage())
            }
            let result: String
            let ok: Bool
            do {
                // The statement the administrator approved, never the current call's text.
                let statement = approval.statement
                let rows = try await underCaller(run.caller, readOnly: false) { connection in try await connection.query(statement) }
                result = AgentJSON.text([
                    "command": .string(rows.commandTag), "result": JSONValue(json: Array(Self.describe(rows, limit: agents.settings.sqlRowLimit).utf8)) ?? .null,
                ])
                ok = true
            } catch let error as PostgresError {
                result = AgentJSON.text(["error": .string(error.message)])
                ok = false
            }
            _ = try await store.moveApproval(approval.id, from: .executing, to: .executed, resultJSON: result)
            return .observation(result, ok: ok, charged: AgentUsage())
        }
    }

    /// Runs `body` in a transaction as the caller's role with their claims and the SQL tools'
    /// statement timeout; a statement that changed the role or the claims is rolled back and
    /// its result withheld (a sanity check for admin runs' free SQL: user runs never send
    /// SQL text of their own).
    private func underCaller(_ caller: AgentCaller, readOnly: Bool, _ body: @Sendable (PostgresConnection) async throws -> PostgresRows) async throws -> PostgresRows {
        let timeout = agents.settings.sqlTimeoutMilliseconds
        return try await context.authenticator.run { connection in
            try await connection.transaction(readOnly: readOnly) { connection in
                try await connection.preparedQuery(
                    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), set_config('statement_timeout', $3, true)",
                    [caller.role, caller.claimsJSON, String(timeout)])
                let rows = try await body(connection)
                let check = try await connection.preparedQuery("SELECT current_user::text, current_setting('request.jwt.claims', true)")
                guard check.rows.first?[0] == caller.role, check.rows.first?[1] == caller.claimsJSON else {
                    throw PostgresError(sqlState: "42501", message: "the statement changed the role or the claims it ran with; its result is withheld")
                }
                return (rows, true)
            }
        }
    }

    // MARK: - REST

    /// Why `path` is no REST path relative to `/rest/v1/`, or nil when it is one.
    static func restPathRefusal(_ path: String) -> String? {
        guard (1...2_000).contains(path.utf8.count) else { return "path must be 1 to 2,000 characters" }
        guard let first = path.unicodeScalars.first, CharacterSet.alphanumerics.contains(first) || first == "_" else {
            return "path must start with a table, view or rpc name (no leading /)"
        }
        let forbidden = CharacterSet(charactersIn: " #\\\"<>{}|^`").union(.controlCharacters)
        guard path.unicodeScalars.allSatisfy({ $0.isASCII && !forbidden.contains($0) }), !path.contains(".."),
            !path.lowercased().contains("%2e"), !path.lowercased().contains("%2f")
        else {
            return "path must be plain ASCII without spaces, \"..\", encoded dots or slashes, #, quotes or control characters (percent-encode values)"
        }
        return nil
    }

    /// Whether `name` is an Edge function name (`[A-Za-z0-9_-]{1,64}`).
    static func isFunctionName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F || byte == 0x2D
            }
    }

    private func rest(_ path: String, run: AgentRunRecord) async throws -> AgentToolOutcome {
        if let refusal = Self.restPathRefusal(path) { return Self.failure(refusal) }
        return try await throughKernel(run: run, method: "GET", path: "rest/v1/\(path)", body: [])
    }

    /// A request to the portal's own routes through the kernel's egress (the `rest` and
    /// `edge_invoke` tools), with a one-minute token of the run's user.
    private func throughKernel(run: AgentRunRecord, method: String, path: String, body: [UInt8]) async throws -> AgentToolOutcome {
        guard let base = agents.settings.restBaseURL else {
            return Self.failure(
                "this tool needs the kernel's own URL (agents_rest_base_url), which this kernel does not set; use \(Self.isPrivileged(run.caller) ? "sql_read" : "table_read")")
        }
        // The kernel signs only user tokens for plugins: runs of service_role or an admin use sql_read.
        guard run.caller.role == "authenticated", let subject = run.caller.subject else {
            return Self.failure("this tool acts only for runs of signed-in users; use sql_read")
        }
        var claims = JSONValue.object(json: Array(run.caller.claimsJSON.utf8)) ?? [:]
        let now = Date().timeIntervalSince1970.rounded(.down)
        claims["sub"] = .string(subject)
        claims["role"] = "authenticated"
        claims["iat"] = .number(now)
        claims["exp"] = .number(now + 60)
        let token = try await context.host.signPortalJWT(claims: claims, portal: context.portal)
        var headers = [("authorization", "Bearer \(token)"), ("accept", "application/json")]
        if method == "POST" { headers.append(("content-type", "application/json")) }
        let answer = try await context.host.fetch(
            "\(base)/p/\(context.portal.name)/\(path)", method: method, headers: headers, body: body,
            timeoutMilliseconds: UInt32(clamping: max(agents.settings.sqlTimeoutMilliseconds, 30_000)), portal: context.portal)
        var text = String(decoding: answer.body.prefix(32_000), as: UTF8.self)
        if answer.body.count > 32_000 { text += "… (cut at 32,000 bytes)" }
        return .observation(AgentJSON.text(["status": JSONValue(answer.status), "body": .string(text)]), ok: (200..<300).contains(answer.status), charged: AgentUsage())
    }

    // MARK: - Sub-agents

    /// The deepest a sub-agent may sit below its root run.
    static let maxSpawnDepth = 8

    private func spawn(_ arguments: [String: JSONValue], call: ToolCall, context toolContext: AgentToolContext) async throws -> AgentToolOutcome {
        let parent = toolContext.run
        let store = agents.store
        var child = try await store.child(of: parent.id, callID: call.id)
        if child == nil {
            // Deeper trees would escape cancel and approve, which walk a bounded depth.
            guard try await store.depth(of: parent.id, limit: Self.maxSpawnDepth) < Self.maxSpawnDepth else {
                return Self.failure("sub-agents may nest at most \(Self.maxSpawnDepth) deep; answer with what you have")
            }
            guard let goal = arguments["goal"]?.stringValue, !goal.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, goal.utf8.count <= 8_000 else {
                return Self.failure("spawn_agent needs a \"goal\" of 1 to 8,000 bytes")
            }
            var tools = parent.tools
            if let asked = arguments["tools"]?.arrayValue {
                let names = asked.compactMap(\.stringValue)
                guard names.count == asked.count, names.allSatisfy(parent.tools.contains) else {
                    return Self.failure("a sub-agent's tools must be among yours: \(parent.tools.joined(separator: ", "))")
                }
                tools = names
            }
            let requested: AgentBudget?
            if let budget = arguments["budget"]?.objectValue {
                func figure(_ key: String, scale: Int = 1) -> Int {
                    guard let value = budget[key]?.numberValue, value.isFinite, value >= 0 else { return Int.max }
                    let scaled = value * Double(scale)
                    return scaled >= 9.0e15 ? Int.max : Int(scaled)
                }
                requested = AgentBudget(steps: figure("steps"), tokens: figure("tokens"), wallClockMilliseconds: figure("wall_clock_seconds", scale: 1000))
            } else {
                requested = nil
            }
            let budget = AgentBudget.carve(requested: requested, from: toolContext.available)
            guard budget.steps >= 1, budget.tokens >= 1, budget.wallClockMilliseconds >= 1 else {
                return Self.failure("too little budget is left for a sub-agent (steps \(budget.steps), tokens \(budget.tokens), \(budget.wallClockMilliseconds) ms)")
            }
            do {
                let created = try await store.create(
                    AgentStore.NewRun(goal: goal, tools: tools, budget: budget, caller: parent.caller, parent: (parent.id, parent.rootID, call.id)),
                    owner: agents.instance, leaseSeconds: agents.settings.leaseSeconds)
                let step = try await store.append(
                    parent.id, kind: .subAgent,
                    contentJSON: AgentJSON.text([
                        "call_id": .string(call.id), "child_id": .string(created.id.uuidString.lowercased()), "goal": .string(String(goal.prefix(500))),
                        "budget": ["steps": JSONValue(budget.steps), "tokens": JSONValue(budget.tokens), "wall_clock_ms": JSONValue(budget.wallClockMilliseconds)],
                    ]))
                try await agents.audit(step)
                child = created
            } catch let error as PostgresError where error.sqlState == "23505" {
                child = try await store.child(of: parent.id, callID: call.id)
            }
        }
        guard let started = child else { return Self.failure("the sub-agent could not be stored") }
        // A child this instance leases runs here; one leased by a dead kernel is taken over
        // by the maintenance task once its lease ran out, a waiting one once it is decided.
        if started.status == .queued { agents.launch(started.id) }
        while true {
            try Task.checkCancellation()
            guard let current = try await store.run(started.id) else { return Self.failure("the sub-agent's run disappeared") }
            if current.status.isTerminal {
                let result: JSONValue = [
                    "child_id": .string(current.id.uuidString.lowercased()), "status": .string(current.status.rawValue), "answer": JSONValue(current.answer),
                    "reason": JSONValue(current.reason),
                ]
                return .observation(AgentJSON.text(result), ok: current.status == .succeeded, charged: AgentUsage(steps: current.usage.steps, tokens: current.usage.tokens))
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    // MARK: - Helpers

    static func failure(_ message: String) -> AgentToolOutcome { .observation(message, ok: false, charged: AgentUsage()) }

    /// Rows as compact JSON for the model: columns, at most `limit` rows (values cut at 1,000
    /// characters), and whether more were left out.
    static func describe(_ rows: PostgresRows, limit: Int) -> String {
        let kept = rows.rows.prefix(limit).map { row in JSONValue.array(row.map { value in value.map { JSONValue.string(String($0.prefix(1000))) } ?? .null }) }
        var text = AgentJSON.text(["columns": .array(rows.columns.map(JSONValue.string)), "rows": .array(Array(kept)), "truncated": .bool(rows.rows.count > limit)])
        if text.utf8.count > 32_000 { text = String(text.prefix(32_000)) + "… (cut at 32,000 characters)" }
        return text
    }
}
