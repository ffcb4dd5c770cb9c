import Foundation
import MeltyJSON
import MeltyPluginSDK

/// `[plugins.intelligence.config]`: each part reads its own keys; a key no part knows is refused.
struct IntelligenceSettings: Sendable {
    /// The keys this table accepts (the union of the parts' keys).
    static let keys: Set<String> = VectorSettings.keys.union(SQLSettings.keys).union(AgentSettings.keys)

    /// The Knowledge Mesh's settings.
    let vectors: VectorSettings
    /// Sentient SQL's settings.
    let sql: SQLSettings
    /// The agents' and the model provider's settings.
    let agents: AgentSettings

    init(config: PluginConfig) throws {
        for key in config.keys where !Self.keys.contains(key) {
            throw PluginError.invalid("unknown key '\(key)' in [plugins.intelligence.config]; expected one of \(Self.keys.sorted().joined(separator: ", "))")
        }
        vectors = try VectorSettings(config: config)
        sql = try SQLSettings(config: config)
        agents = try AgentSettings(config: config)
    }
}
