import Foundation
import MeltyPluginSDK

/// The keys of `[plugins.intelligence.config]` that Sentient SQL read.
struct SQLSettings: Sendable {
    /// The keys this part reads.
    static let keys: Set<String> = ["sql_explain_timeout_ms", "rls_schemas"]

    /// The statement timeout of each EXPLAIN check (default 2,000 ms).
    let explainTimeoutMilliseconds: Int
    /// The schemas whose tables get RLS proposals (default `["public"]`, the REST API's).
    let rlsSchemas: [String]

    init(config: PluginConfig) throws {
        explainTimeoutMilliseconds = try config.integer("sql_explain_timeout_ms", in: 100...30_000, plugin: "intelligence") ?? 2_000
        let schemas = try config.strings("rls_schemas", plugin: "intelligence") ?? ["public"]
        guard !schemas.isEmpty, schemas.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 63 && !$0.utf8.contains(0) }) else {
            throw PluginError.invalid("intelligence: config key 'rls_schemas' must list schema names (1 to 63 bytes each)")
        }
        rlsSchemas = schemas
    }
}
