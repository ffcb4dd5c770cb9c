/// DDL of the `hub` schema in the system database (applied at every start, idempotent):
/// hourly usage, the month's distinct members, quota events and the day and month rollups.
enum UsageSchema {
    /// The script.
    static let sql = """
        SET client_min_messages = warning;
        SELECT pg_advisory_xact_lock(7426001);
        CREATE SCHEMA IF NOT EXISTS hub;
        CREATE TABLE IF NOT EXISTS hub.usage_hourly (
            portal text NOT NULL,
            hour timestamptz NOT NULL,
            metric text NOT NULL,
            dimension text NOT NULL DEFAULT '',
            value double precision NOT NULL,
            PRIMARY KEY (portal, hour, metric, dimension)
        );
        CREATE INDEX IF NOT EXISTS usage_hourly_hour ON hub.usage_hourly (hour);
        CREATE TABLE IF NOT EXISTS hub.active_members (
            portal text NOT NULL,
            month date NOT NULL,
            set_name text NOT NULL,
            member_hash text NOT NULL,
            PRIMARY KEY (portal, month, set_name, member_hash)
        );
        CREATE TABLE IF NOT EXISTS hub.quota_events (
            portal text NOT NULL,
            month date NOT NULL,
            metric text NOT NULL,
            level text NOT NULL CHECK (level IN ('soft', 'hard')),
            total double precision NOT NULL,
            limit_value double precision NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (portal, month, metric, level)
        );
        CREATE OR REPLACE VIEW hub.usage_daily AS
            SELECT portal, date_trunc('day', hour, 'UTC') AS day, metric, dimension,
                CASE WHEN \(UsageMetric.maximumCondition) THEN max(value) ELSE sum(value) END AS value
            FROM hub.usage_hourly GROUP BY 1, 2, 3, 4;
        CREATE OR REPLACE VIEW hub.usage_monthly AS
            SELECT portal, date_trunc('month', hour, 'UTC') AS month, metric, dimension,
                CASE WHEN \(UsageMetric.maximumCondition) THEN max(value) ELSE sum(value) END AS value
            FROM hub.usage_hourly GROUP BY 1, 2, 3, 4
            UNION ALL
            SELECT portal, month::timestamp AT TIME ZONE 'UTC' AS month, 'active_' || set_name AS metric, '' AS dimension,
                count(*)::double precision AS value
            FROM hub.active_members GROUP BY 1, 2, 3;
        """
}
