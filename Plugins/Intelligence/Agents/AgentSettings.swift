import Foundation
import MeltyPluginSDK

/// The keys of `[plugins.intelligence.config]` that the agents and the model provider read.
struct AgentSettings: Sendable {
    /// The keys this part reads.
    static let keys: Set<String> = []

    init(config: PluginConfig) throws {}
}
