import Foundation
import MeltyPluginSDK

/// The keys of `[plugins.intelligence.config]` that Sentient SQL read.
struct SQLSettings: Sendable {
    /// The keys this part reads.
    static let keys: Set<String> = []

    init(config: PluginConfig) throws {}
}
