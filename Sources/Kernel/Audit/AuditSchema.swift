/// DDL of the audit log: the hash-chained entries, the signed checkpoints, and the
/// triggers that make both append-only. Idempotent; meant to run on every start right
/// after ``SystemSchema`` (it takes the same schema lock) and before anything appends.
public enum AuditSchema {
    /// The advisory lock every appender takes for the rest of its transaction, so that
    /// two writers (in any process, on any node) never read the same head.
    static let appendLockKey = 7_426_002

    /// The script, for `PostgresConnection.execute(_:)` (one implicit transaction).
    public static let sql = """
        SET client_min_messages = warning;
        SELECT pg_advisory_xact_lock(7426001);
        CREATE SCHEMA IF NOT EXISTS meltybase;
        CREATE TABLE IF NOT EXISTS meltybase.audit_log (
            seq bigint PRIMARY KEY CHECK (seq > 0),
            at timestamptz NOT NULL,
            actor text NOT NULL,
            action text NOT NULL,
            target text NOT NULL,
            portal text,
            details jsonb NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL
        );
        CREATE INDEX IF NOT EXISTS audit_log_action_seq ON meltybase.audit_log (action, seq);
        CREATE INDEX IF NOT EXISTS audit_log_actor_seq ON meltybase.audit_log (actor, seq);
        CREATE INDEX IF NOT EXISTS audit_log_at ON meltybase.audit_log (at);
        CREATE TABLE IF NOT EXISTS meltybase.audit_checkpoints (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            seq bigint NOT NULL,
            head_hash text NOT NULL,
            signature text NOT NULL,
            public_key text NOT NULL
        );
        CREATE OR REPLACE FUNCTION meltybase.audit_refuse_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% on %.% refused: the audit log is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'audit entries and checkpoints can only be appended; see docs/audit-log.md';
            END $$;
        DO $$
        DECLARE
            target text;
        BEGIN
            FOREACH target IN ARRAY ARRAY['audit_log', 'audit_checkpoints'] LOOP
                IF NOT EXISTS (SELECT 1 FROM pg_trigger
                               WHERE tgrelid = ('meltybase.' || target)::regclass AND tgname = target || '_no_change') THEN
                    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON meltybase.%I
                                    FOR EACH ROW EXECUTE FUNCTION meltybase.audit_refuse_change()', target || '_no_change', target);
                END IF;
                IF NOT EXISTS (SELECT 1 FROM pg_trigger
                               WHERE tgrelid = ('meltybase.' || target)::regclass AND tgname = target || '_no_truncate') THEN
                    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON meltybase.%I
                                    FOR EACH STATEMENT EXECUTE FUNCTION meltybase.audit_refuse_change()', target || '_no_truncate', target);
                END IF;
            END LOOP;
        END $$;
        """
}
