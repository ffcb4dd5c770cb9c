import Foundation
import MeltyJSON
import MeltyPluginSDK

/// `[plugins.intelligence.config]`: defaults every portal starts from.
struct IntelligenceSettings: Sendable {
    /// The keys this table accepts.
    static let keys: Set<String> = []

    init(config: PluginConfig) throws {
        for key in config.keys where !Self.keys.contains(key) {
            throw PluginError.invalid("unknown key '\(key)' in [plugins.intelligence.config]; expected one of \(Self.keys.sorted().joined(separator: ", "))")
        }
    }
}
