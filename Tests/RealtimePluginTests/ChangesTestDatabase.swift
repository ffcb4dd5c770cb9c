import Foundation
import MeltyPostgres
import MeltyTestServices
import RealtimeCore

/// A fresh portal-like database for the change-capture tests: Supabase's roles, `auth.uid()`,
/// the `supabase_realtime` publication (as the Database plugin provisions them) and a table
/// `notes` with row-level security `owner = auth.uid()`, a column `secret` authenticated may
/// not select, in the publication.
enum ChangesTestDatabase {
    static func make() async throws -> String {
        let conninfo = try TestServices.freshDatabase()
        let connection = try await TestServices.connect(conninfo)
        defer { connection.close() }
        try await connection.execute(
            """
            DO $$ BEGIN
              -- Roles are cluster-wide and tests run in parallel: another may create them first.
              BEGIN CREATE ROLE anon NOLOGIN NOINHERIT; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
              BEGIN CREATE ROLE authenticated NOLOGIN NOINHERIT; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
              BEGIN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
            END $$;
            GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
            CREATE SCHEMA auth;
            GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
            CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS
              $f$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $f$;
            CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS
              $f$ SELECT nullif(auth.jwt() ->> 'sub', '')::uuid $f$;
            DO $p$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN CREATE PUBLICATION supabase_realtime; END IF;
            END $p$;
            CREATE TABLE notes (
              id int8 PRIMARY KEY, owner uuid, amount numeric, meta jsonb, body text, flag bool, secret text,
              created timestamptz NOT NULL DEFAULT now()
            );
            ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
            CREATE POLICY own_notes ON notes FOR SELECT USING (owner = auth.uid());
            GRANT SELECT ON notes TO anon, service_role;
            GRANT SELECT (id, owner, amount, meta, body, flag, created) ON notes TO authenticated;
            -- Supabase's recommended form: (select auth.uid()) is an InitPlan, evaluated once per statement.
            CREATE TABLE cards (id uuid PRIMARY KEY, owner uuid NOT NULL, title text);
            ALTER TABLE cards ENABLE ROW LEVEL SECURITY;
            CREATE POLICY own_cards ON cards FOR SELECT USING (owner = (select auth.uid()));
            GRANT SELECT ON cards TO anon, authenticated, service_role;
            CREATE TABLE open_items (a int4, b text, v text, PRIMARY KEY (a, b));
            GRANT SELECT ON open_items TO anon, authenticated, service_role;
            ALTER PUBLICATION supabase_realtime ADD TABLE notes, cards, open_items;
            """)
        return conninfo
    }

    /// A claims JSON for user `id`.
    static func claims(_ id: String) -> String { #"{"sub":"\#(id)","role":"authenticated"}"# }
}

/// Collects what a feed hands over.
actor ChangesCollector {
    private(set) var batches: [[RowChange]] = []

    func add(_ batch: [RowChange]) { batches.append(batch) }

    var changes: [RowChange] { batches.flatMap { $0 } }

    /// Waits until at least `count` changes arrived (up to `seconds`).
    func waitFor(changes count: Int, seconds: Double = 20) async -> [RowChange] {
        let deadline = Date().addingTimeInterval(seconds)
        while changes.count < count && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return changes
    }
}
