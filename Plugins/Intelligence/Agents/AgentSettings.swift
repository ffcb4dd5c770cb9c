import AgentCore
import Foundation
import MeltyPluginSDK

/// The keys of `[plugins.intelligence.config]` that the agents read: default and maximum
/// budgets, the lease that lets another kernel resume a dead kernel's runs, and the SQL
/// tools' limits.
struct AgentSettings: Sendable {
    /// The keys this part reads.
    static let keys: Set<String> = [
        "agents_default_steps", "agents_max_steps", "agents_default_tokens", "agents_max_tokens", "agents_default_wall_clock_seconds",
        "agents_max_wall_clock_seconds", "agents_lease_seconds", "agents_sql_row_limit", "agents_sql_timeout_ms", "agents_max_active_runs", "agents_max_active_runs_per_user",
        "agents_table_schemas",
        "agents_rest_base_url",
    ]

    /// A run's budget when it asks for none.
    let defaultBudget: AgentBudget
    /// The most a run may ask for.
    let maximumBudget: AgentBudget
    /// How long a kernel's claim on a working run lasts without renewal (renewed every third
    /// of it): after a crash, runs resume this long after the kernel comes back at the latest.
    let leaseSeconds: Int
    /// The most rows a `sql_read` returns to the model.
    let sqlRowLimit: Int
    /// `statement_timeout` of the SQL tools.
    let sqlTimeoutMilliseconds: Int
    /// The most runs (sub-agents included) working at once in one portal.
    let maxActiveRuns: Int
    /// The most top-level runs one user may have working at once (`agents_max_active_runs_per_user`).
    let maxActiveRunsPerUser: Int
    /// The schemas `table_read` reads (`agents_table_schemas`, default `["public"]`; never
    /// `auth`, `pg_*`, `information_schema` or the plugins' own schemas).
    let tableSchemas: [String]
    /// The kernel's own address (`http://127.0.0.1:8000`) for the `rest` tool, which reads
    /// the portal's REST API through the egress (list the host in `egress_hosts`); nil
    /// leaves the tool out.
    let restBaseURL: String?

    init(config: PluginConfig) throws {
        func read(_ key: String, _ range: ClosedRange<Int>, _ fallback: Int) throws -> Int {
            try config.integer(key, in: range, plugin: "intelligence") ?? fallback
        }
        let maxSteps = try read("agents_max_steps", 1...1_000, 50)
        let maxTokens = try read("agents_max_tokens", 1...100_000_000, 1_000_000)
        let maxSeconds = try read("agents_max_wall_clock_seconds", 1...86_400, 1_800)
        maximumBudget = AgentBudget(steps: maxSteps, tokens: maxTokens, wallClockMilliseconds: maxSeconds * 1000)
        defaultBudget = AgentBudget(
            steps: try read("agents_default_steps", 1...1_000, 12), tokens: try read("agents_default_tokens", 1...100_000_000, 100_000),
            wallClockMilliseconds: try read("agents_default_wall_clock_seconds", 1...86_400, 300) * 1000
        ).clamped(maximum: maximumBudget)
        leaseSeconds = try read("agents_lease_seconds", 3...600, 15)
        sqlRowLimit = try read("agents_sql_row_limit", 1...10_000, 100)
        sqlTimeoutMilliseconds = try read("agents_sql_timeout_ms", 100...600_000, 5_000)
        maxActiveRuns = try read("agents_max_active_runs", 1...10_000, 64)
        maxActiveRunsPerUser = try read("agents_max_active_runs_per_user", 1...10_000, 4)
        let schemas = try config.strings("agents_table_schemas", plugin: "intelligence") ?? ["public"]
        let reserved = ["auth", "information_schema", "intelligence", "intelligence_mesh", "meltybase_internal", "realtime", "extensions", "vault"]
        guard !schemas.isEmpty, schemas.count <= 32,
            schemas.allSatisfy({ name in
                (1...63).contains(name.utf8.count) && !name.contains("\u{0}") && !name.hasPrefix("pg_") && !reserved.contains(name)
            })
        else {
            throw PluginError.invalid(
                "intelligence: config key 'agents_table_schemas' must list 1 to 32 schema names, none of auth, information_schema, pg_*, or the plugins' own schemas")
        }
        tableSchemas = schemas
        if let url = try config.string("agents_rest_base_url", plugin: "intelligence") {
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil, parsed.query == nil,
                parsed.path.isEmpty || parsed.path == "/"
            else {
                throw PluginError.invalid("intelligence: config key 'agents_rest_base_url' must be the kernel's base URL such as \"http://127.0.0.1:8000\"")
            }
            restBaseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        } else {
            restBaseURL = nil
        }
    }
}
