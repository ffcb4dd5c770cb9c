import Foundation
import MeltyPostgres
import PortalDatabaseCore

/// Creates what a portal's database needs, idempotently and safely from several kernels
/// at once: the cluster-wide roles `anon`, `authenticated`, `service_role` and the login
/// role `authenticator` (PostgREST's pattern: it may only switch into those); the portal's
/// database and owner role; the `auth` schema with `auth.uid()`, `auth.role()`, `auth.jwt()`
/// and GoTrue's tables; the extensions Supabase projects assume, in schema `extensions` on
/// the database's search path; default grants; and an event trigger that announces DDL so
/// the schema cache reloads.
enum PortalProvisioner {
    /// Why a portal's database cannot be provisioned, with what to do about it.
    struct Failure: Error, CustomStringConvertible {
        /// What failed and what to do.
        var description: String
    }

    /// The extensions every portal database has (Supabase projects assume them), from
    /// Postgres' contrib modules; all four are trusted, so the owner could add them too.
    static let extensions = ["uuid-ossp", "pgcrypto", "pg_trgm", "citext"]

    static func databaseName(_ portal: String) -> String { PortalDatabaseNames.database(portal) }
    static func ownerRole(_ portal: String) -> String { PortalDatabaseNames.owner(portal) }
    static func conninfo(_ system: String, portal: String, user: String? = nil) -> String {
        PortalDatabaseNames.conninfo(system, portal: portal, user: user)
    }

    /// Provisions `portal` over the kernel's system connection `systemConninfo`.
    static func provision(portal: String, systemConninfo: String, loop: PostgresEventLoop) async throws {
        let system = try await PostgresConnection.connect(systemConninfo, on: loop)
        defer { system.close() }
        let database = databaseName(portal)
        let owner = ownerRole(portal)
        // One provisioning at a time across kernels (roles and CREATE DATABASE race otherwise).
        try await system.query("SELECT pg_advisory_lock(7402110)")
        // The session lock ends with the connection (closed when this returns).
        try await system.execute(
            """
            DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN NOINHERIT; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN NOINHERIT; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN CREATE ROLE authenticator LOGIN NOINHERIT; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = \(SQL.literal(owner))) THEN CREATE ROLE \(SQL.ident(owner)) LOGIN; END IF;
            END $$;
            GRANT anon, authenticated, service_role TO authenticator;
            GRANT anon, authenticated, service_role TO \(SQL.ident(owner));
            """)
        if try await system.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]).rows.isEmpty {
            try await system.execute("CREATE DATABASE \(SQL.ident(database)) OWNER \(SQL.ident(owner)) ENCODING 'UTF8' TEMPLATE template0")
            try await system.execute(
                """
                REVOKE ALL ON DATABASE \(SQL.ident(database)) FROM PUBLIC;
                GRANT CONNECT, TEMPORARY ON DATABASE \(SQL.ident(database)) TO authenticator, \(SQL.ident(owner));
                """)
        }
        let portalConnection = try await PostgresConnection.connect(conninfo(systemConninfo, portal: portal), on: loop)
        defer { portalConnection.close() }
        try await requireExtensionFiles(on: portalConnection)
        try await portalConnection.execute(schemaScript(owner: owner, database: database))
    }

    /// Fails with the package to install when Postgres lacks the contrib modules (`CREATE
    /// EXTENSION` alone would only say a control file is missing).
    static func requireExtensionFiles(on connection: PostgresConnection) async throws {
        let rows = try await connection.query("SELECT name FROM pg_available_extensions").rows
        let available = Set(rows.compactMap { $0.first ?? nil })
        let missing = extensions.filter { !available.contains($0) }
        guard !missing.isEmpty else { return }
        let version = try await connection.query("SHOW server_version").rows.first?.first ?? nil
        throw Failure(
            description: "Postgres \(version ?? "") has no files for the extension(s) \(missing.joined(separator: ", ")) "
                + "that every portal database gets: install Debian's postgresql-contrib package "
                + "(the contrib modules of the Postgres the kernel runs); provisioning retries on the next request")
    }

    /// The in-database part; every statement is idempotent.
    static func schemaScript(owner: String, database: String) -> String {
        let owner = SQL.ident(owner)
        let extensionStatements = extensions.map { "CREATE EXTENSION IF NOT EXISTS \(SQL.ident($0)) WITH SCHEMA extensions;" }
        return """
            ALTER SCHEMA public OWNER TO \(owner);
            GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
            ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
            ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
            ALTER DEFAULT PRIVILEGES FOR ROLE \(owner) IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO anon, authenticated, service_role;
            CREATE SCHEMA IF NOT EXISTS auth;
            GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, \(owner);
            CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS
              $f$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $f$;
            CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS
              $f$ SELECT nullif(auth.jwt() ->> 'sub', '')::uuid $f$;
            CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS
              $f$ SELECT nullif(auth.jwt() ->> 'role', '') $f$;
            CREATE OR REPLACE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS
              $f$ SELECT nullif(auth.jwt() ->> 'email', '') $f$;
            GRANT EXECUTE ON FUNCTION auth.jwt(), auth.uid(), auth.role(), auth.email() TO PUBLIC;
            CREATE TABLE IF NOT EXISTS auth.users (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                aud text NOT NULL DEFAULT 'authenticated',
                role text NOT NULL DEFAULT 'authenticated',
                email text UNIQUE,
                encrypted_password text,
                email_confirmed_at timestamptz,
                last_sign_in_at timestamptz,
                raw_app_meta_data jsonb NOT NULL DEFAULT '{"provider": "email", "providers": ["email"]}',
                raw_user_meta_data jsonb NOT NULL DEFAULT '{}',
                is_anonymous boolean NOT NULL DEFAULT false,
                banned_until timestamptz,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            );
            -- GoTrue's user columns for invitations, confirmations, recovery, email change and
            -- soft deletion (added in place on portals provisioned before them).
            ALTER TABLE auth.users
                ADD COLUMN IF NOT EXISTS confirmation_sent_at timestamptz,
                ADD COLUMN IF NOT EXISTS recovery_sent_at timestamptz,
                ADD COLUMN IF NOT EXISTS email_change text,
                ADD COLUMN IF NOT EXISTS email_change_sent_at timestamptz,
                ADD COLUMN IF NOT EXISTS invited_at timestamptz,
                ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
            CREATE TABLE IF NOT EXISTS auth.sessions (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                user_id uuid NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
                aal text NOT NULL DEFAULT 'aal1',
                amr jsonb NOT NULL DEFAULT '[]',
                factor_id uuid,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now(),
                revoked_at timestamptz
            );
            CREATE TABLE IF NOT EXISTS auth.refresh_tokens (
                token_hash text PRIMARY KEY,
                session_id uuid NOT NULL REFERENCES auth.sessions(id) ON DELETE CASCADE,
                parent_hash text,
                revoked boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE IF NOT EXISTS auth.mfa_factors (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                user_id uuid NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
                friendly_name text,
                factor_type text NOT NULL DEFAULT 'totp',
                status text NOT NULL DEFAULT 'unverified',
                secret text NOT NULL,
                last_step bigint NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE IF NOT EXISTS auth.mfa_challenges (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                factor_id uuid NOT NULL REFERENCES auth.mfa_factors(id) ON DELETE CASCADE,
                created_at timestamptz NOT NULL DEFAULT now(),
                verified_at timestamptz
            );
            -- The owner sees its users, as Supabase's SQL editor does.
            GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA auth TO \(owner);
            -- Apps key their own tables to users (profiles.id REFERENCES auth.users), as in Supabase.
            GRANT REFERENCES ON auth.users TO \(owner);
            CREATE SCHEMA IF NOT EXISTS meltybase_internal;
            REVOKE ALL ON SCHEMA meltybase_internal FROM PUBLIC;
            CREATE TABLE IF NOT EXISTS meltybase_internal.migrations (
                name text PRIMARY KEY,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            );
            \(AttemptThrottle.schema)
            \(AuthHandler.emailSchema)
            GRANT USAGE ON SCHEMA meltybase_internal TO \(owner);
            GRANT SELECT, INSERT ON meltybase_internal.migrations TO \(owner);
            CREATE OR REPLACE FUNCTION meltybase_internal.announce_ddl() RETURNS event_trigger LANGUAGE plpgsql AS
              $f$ BEGIN NOTIFY pgrst, 'reload schema'; END $f$;
            DO $d$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'meltybase_ddl_end') THEN
                CREATE EVENT TRIGGER meltybase_ddl_end ON ddl_command_end EXECUTE FUNCTION meltybase_internal.announce_ddl();
              END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'meltybase_sql_drop') THEN
                CREATE EVENT TRIGGER meltybase_sql_drop ON sql_drop EXECUTE FUNCTION meltybase_internal.announce_ddl();
              END IF;
            END $d$;
            -- Realtime streams the tables apps add here (`alter publication supabase_realtime
            -- add table t`, as in Supabase projects); the owner runs the migrations, so it owns it.
            DO $p$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
                CREATE PUBLICATION supabase_realtime;
              END IF;
            END $p$;
            ALTER PUBLICATION supabase_realtime OWNER TO \(owner);
            -- Supabase's layout: extensions live in their own schema, last on the search path, so
            -- migrations call `uuid_generate_v4()` or `crypt(.., gen_salt('bf'))` unqualified. An
            -- extension a migration already created elsewhere stays where it is. The setting
            -- applies to every later connection: REST, the SQL console, migrations, auth.
            CREATE SCHEMA IF NOT EXISTS extensions;
            \(extensionStatements.joined(separator: "\n"))
            GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role;
            GRANT USAGE, CREATE ON SCHEMA extensions TO \(owner);
            ALTER DATABASE \(SQL.ident(database)) SET search_path = "$user", public, extensions;
            """
    }
}
