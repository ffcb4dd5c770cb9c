import Foundation
import MeltyPostgres

/// Where a portal's ``ProviderSettings`` live: one row of `intelligence.provider_settings`
/// in the portal database, read and written as its owner. The table is created on first use
/// (``schema``, idempotent), so the part works whether or not `IntelligenceSchema` lists it.
struct ProviderSettingsStore: Sendable {
    /// The portal database as its owner.
    let owner: PostgresPool

    /// The table (one row at most: `singleton` is always true). No client role may read it.
    static let schema = """
        CREATE TABLE IF NOT EXISTS intelligence.provider_settings (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            base_url text NOT NULL,
            chat_model text NOT NULL,
            embedding_model text,
            api_key_secret text,
            stream boolean NOT NULL DEFAULT false,
            timeout_seconds integer NOT NULL DEFAULT 60 CHECK (timeout_seconds BETWEEN 1 AND 600),
            max_tokens integer CHECK (max_tokens BETWEEN 1 AND 1000000),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        REVOKE ALL ON intelligence.provider_settings FROM PUBLIC;
        """

    /// The settings, or nil when the portal configured no provider.
    func load() async throws -> ProviderSettings? {
        let rows = try await withTable { connection in
            try await connection.query(
                "SELECT base_url, chat_model, embedding_model, api_key_secret, stream, timeout_seconds, max_tokens FROM intelligence.provider_settings")
        }
        guard let row = rows.rows.first, row.count == 7, let baseURL = row[0], let chatModel = row[1] else { return nil }
        return ProviderSettings(
            baseURL: baseURL, chatModel: chatModel, embeddingModel: row[2], apiKeySecret: row[3], stream: row[4] == "t",
            timeoutSeconds: row[5].flatMap { Int($0) } ?? ProviderSettings.defaultTimeoutSeconds, maxTokens: row[6].flatMap { Int($0) })
    }

    /// Stores `settings`, replacing any earlier ones.
    func save(_ settings: ProviderSettings) async throws {
        _ = try await withTable { connection in
            try await connection.query(
                """
                INSERT INTO intelligence.provider_settings
                    (singleton, base_url, chat_model, embedding_model, api_key_secret, stream, timeout_seconds, max_tokens, updated_at)
                VALUES (true, $1, $2, $3, $4, $5::boolean, $6::integer, $7::integer, now())
                ON CONFLICT (singleton) DO UPDATE SET base_url = EXCLUDED.base_url, chat_model = EXCLUDED.chat_model,
                    embedding_model = EXCLUDED.embedding_model, api_key_secret = EXCLUDED.api_key_secret, stream = EXCLUDED.stream,
                    timeout_seconds = EXCLUDED.timeout_seconds, max_tokens = EXCLUDED.max_tokens, updated_at = now()
                """,
                [
                    settings.baseURL, settings.chatModel, settings.embeddingModel, settings.apiKeySecret, settings.stream ? "true" : "false",
                    String(settings.timeoutSeconds), settings.maxTokens.map { String($0) },
                ])
        }
    }

    /// Forgets the settings; whether there were any.
    func delete() async throws -> Bool {
        let rows = try await withTable { connection in
            try await connection.query("DELETE FROM intelligence.provider_settings")
        }
        return rows.commandTag != "DELETE 0"
    }

    /// Runs `body`; when the table does not exist yet (SQLSTATE 42P01) creates it and runs
    /// `body` once more.
    private func withTable(_ body: @Sendable (PostgresConnection) async throws -> PostgresRows) async throws -> PostgresRows {
        try await owner.run { connection in
            do {
                return try await body(connection)
            } catch let error as PostgresError where error.sqlState == "42P01" || error.sqlState == "3F000" {
                do {
                    _ = try await connection.execute("CREATE SCHEMA IF NOT EXISTS intelligence;\n" + Self.schema)
                } catch let error as PostgresError where error.sqlState == "23505" || error.sqlState == "42P07" {
                    // Another request created it at the same moment.
                }
                return try await body(connection)
            }
        }
    }
}
