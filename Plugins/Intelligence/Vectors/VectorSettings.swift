import Foundation
import MeltyPluginSDK

/// The keys of `[plugins.intelligence.config]` that the Knowledge Mesh read.
struct VectorSettings: Sendable {
    /// The keys this part reads.
    static let keys: Set<String> = []

    init(config: PluginConfig) throws {}
}
