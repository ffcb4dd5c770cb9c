import Foundation

/// The metering's SQL on the system database: the batched flush (merging with other
/// kernels' counts), the rollup queries, monthly totals and quota events.
struct UsageStore: Sendable {
    /// The system database.
    let database: SystemDatabase

    /// Granularity of a usage query.
    enum Granularity: String, Sendable, CaseIterable {
        case hour, day, month
    }

    /// One row of a usage answer.
    struct Row: Sendable, Equatable, Encodable {
        /// The portal.
        var portal: String
        /// The period's start, ISO 8601 UTC.
        var period: String
        /// The metric.
        var metric: String
        /// The breakdown ('' for none).
        var dimension: String
        /// The value (a count, bytes, or a gauge's maximum).
        var value: Double
    }

    /// The `INSERT` adding a batch's counts to the hour's rows; another kernel's counts for
    /// the same (portal, hour, metric, dimension) add up instead of conflicting.
    static let addSQL = """
        INSERT INTO hub.usage_hourly (portal, hour, metric, dimension, value)
        SELECT p, $1::timestamptz, m, d, v FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[]) AS t(p, m, d, v)
        ON CONFLICT (portal, hour, metric, dimension) DO UPDATE SET value = usage_hourly.value + EXCLUDED.value
        """
    /// Gauges: the hour keeps the largest sample.
    static let maxSQL = """
        INSERT INTO hub.usage_hourly (portal, hour, metric, dimension, value)
        SELECT p, $1::timestamptz, m, d, v FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[]) AS t(p, m, d, v)
        ON CONFLICT (portal, hour, metric, dimension) DO UPDATE SET value = greatest(usage_hourly.value, EXCLUDED.value)
        """
    /// Active members: each once per portal, month and set.
    static let markSQL = """
        INSERT INTO hub.active_members (portal, month, set_name, member_hash)
        SELECT p, date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC')::date, s, h FROM unnest($2::text[], $3::text[], $4::text[]) AS t(p, s, h)
        ON CONFLICT DO NOTHING
        """

    /// The statements writing `batch` into `hour` (and its month), keys in one order so two
    /// kernels flushing at once never deadlock.
    static func flushSteps(_ batch: UsageBatch, hour: Date) -> [(sql: String, parameters: [String?])] {
        let stamp = UsageClock.iso(hour)
        var steps: [(sql: String, parameters: [String?])] = []
        for (sql, values) in [(addSQL, batch.sums), (maxSQL, batch.maxima)] where !values.isEmpty {
            let sorted = values.sorted { $0.key < $1.key }
            steps.append(
                (
                    sql,
                    [
                        stamp, PostgresArrayLiteral.text(sorted.map(\.key.portal)), PostgresArrayLiteral.text(sorted.map(\.key.metric)),
                        PostgresArrayLiteral.text(sorted.map(\.key.dimension)), "{" + sorted.map { String($0.value) }.joined(separator: ",") + "}",
                    ]
                ))
        }
        if !batch.marks.isEmpty {
            let sorted = batch.marks.sorted()
            steps.append(
                (
                    markSQL,
                    [
                        stamp, PostgresArrayLiteral.text(sorted.map(\.portal)), PostgresArrayLiteral.text(sorted.map(\.set)),
                        PostgresArrayLiteral.text(sorted.map(\.memberHash)),
                    ]
                ))
        }
        return steps
    }

    /// Writes `batch` into `hour` in one transaction (one round trip).
    func flush(_ batch: UsageBatch, hour: Date) async throws {
        let steps = Self.flushSteps(batch, hour: hour)
        guard !steps.isEmpty else { return }
        try await database.withConnection { connection in
            _ = try await connection.pipeline([("BEGIN", [])] + steps + [("COMMIT", [])])
        }
    }

    /// The size of each portal's database (those that exist), by portal.
    func databaseSizes(portals: [String]) async throws -> [String: Double] {
        guard !portals.isEmpty else { return [:] }
        var byDatabase: [String: String] = [:]
        for portal in portals { byDatabase[UsageMetric.portalDatabase(portal)] = portal }
        let rows = try await database.withConnection { connection in
            try await connection.query(
                "SELECT datname, pg_database_size(oid)::text FROM pg_database WHERE datname = ANY($1::text[])",
                [PostgresArrayLiteral.text(byDatabase.keys.sorted())]
            ).rows
        }
        var sizes: [String: Double] = [:]
        for row in rows {
            if let name = row[0], let portal = byDatabase[name], let size = row[1].flatMap(Double.init) { sizes[portal] = size }
        }
        return sizes
    }

    /// The license tier in the system state (`indie` without a license).
    func licenseTier() async throws -> String {
        try await database.withConnection { connection in
            try await connection.query("SELECT coalesce(license_tier, 'indie') AS tier FROM meltybase.system_state").value("tier") ?? "indie"
        }
    }

    /// The month's totals by portal and metric, from the hourly rows (counts summed, gauges'
    /// maximum) and the distinct members: the same figures as `hub.usage_monthly` summed over dimensions.
    func monthlyTotals(month: Date, portal: String? = nil) async throws -> [String: [String: Double]] {
        let start = UsageClock.iso(UsageClock.month(month))
        let end = UsageClock.iso(UsageClock.nextMonth(month))
        let rows = try await database.withConnection { connection in
            try await connection.query(
                """
                SELECT portal, metric, sum(value)::text FROM (
                    SELECT portal, metric, dimension, CASE WHEN \(UsageMetric.maximumCondition) THEN max(value) ELSE sum(value) END AS value
                    FROM hub.usage_hourly WHERE hour >= $1::timestamptz AND hour < $2::timestamptz AND ($3::text IS NULL OR portal = $3)
                    GROUP BY portal, metric, dimension
                    UNION ALL
                    SELECT portal, 'active_' || set_name, '', count(*)::double precision
                    FROM hub.active_members WHERE month = ($1::timestamptz AT TIME ZONE 'UTC')::date AND ($3::text IS NULL OR portal = $3)
                    GROUP BY portal, set_name
                ) totals GROUP BY portal, metric
                """, [start, end, portal]
            ).rows
        }
        var totals: [String: [String: Double]] = [:]
        for row in rows {
            guard let portal = row[0], let metric = row[1], let value = row[2].flatMap(Double.init) else { continue }
            totals[portal, default: [:]][metric] = value
        }
        return totals
    }

    /// Usage rows of periods starting in [`from`, `to`), at most `limit` (+1 to tell that there are more).
    func rows(portal: String?, from: Date, to: Date, granularity: Granularity, limit: Int) async throws -> [Row] {
        let source: String
        switch granularity {
        case .hour: source = "SELECT portal, hour AS period, metric, dimension, value FROM hub.usage_hourly"
        case .day: source = "SELECT portal, day AS period, metric, dimension, value FROM hub.usage_daily"
        case .month: source = "SELECT portal, month AS period, metric, dimension, value FROM hub.usage_monthly"
        }
        let rows = try await database.withConnection { connection in
            try await connection.query(
                """
                SELECT portal, to_char(period AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), metric, dimension, value::text
                FROM (\(source)) usage
                WHERE period >= $1::timestamptz AND period < $2::timestamptz AND ($3::text IS NULL OR portal = $3)
                ORDER BY period, portal, metric, dimension LIMIT \(limit + 1)
                """, [UsageClock.iso(from), UsageClock.iso(to), portal]
            ).rows
        }
        return rows.map {
            Row(portal: $0[0] ?? "", period: $0[1] ?? "", metric: $0[2] ?? "", dimension: $0[3] ?? "", value: $0[4].flatMap(Double.init) ?? 0)
        }
    }

    /// Whether `portal` exists or has usage on record.
    func knows(portal: String) async throws -> Bool {
        try await database.withConnection { connection in
            try await connection.query(
                """
                SELECT (EXISTS (SELECT 1 FROM meltybase.portals WHERE name = $1)
                    OR EXISTS (SELECT 1 FROM hub.usage_hourly WHERE portal = $1))::text AS known
                """, [portal]
            ).value("known") == "true"
        }
    }

    /// Records a quota crossing once per portal, month, metric and level; true when this
    /// call recorded it (the kernel that did writes the audit entry).
    func recordQuotaEvent(portal: String, month: Date, metric: String, level: String, total: Double, limit: Double) async throws -> Bool {
        try await database.withConnection { connection in
            !(try await connection.query(
                """
                INSERT INTO hub.quota_events (portal, month, metric, level, total, limit_value)
                VALUES ($1, ($2::timestamptz AT TIME ZONE 'UTC')::date, $3, $4, $5::float8, $6::float8)
                ON CONFLICT DO NOTHING RETURNING portal
                """, [portal, UsageClock.iso(UsageClock.month(month)), metric, level, String(total), String(limit)]
            ).rows.isEmpty)
        }
    }
}
