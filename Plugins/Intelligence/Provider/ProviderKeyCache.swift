import Foundation
import Synchronization

/// A portal's API key as read from its Vault, kept in memory for a minute so that each model
/// call does not read (and audit) the secret again. Only in this process's memory: never
/// logged, never written anywhere. Forgotten when the portal's settings change and when the
/// provider refuses the key.
final class ProviderKeyCache: Sendable {
    /// How long a key is reused, in seconds.
    static let lifetime: Double = 60

    private struct Entry {
        var secret: String
        var value: String
        var expires: Double
    }

    private let entry = Mutex<Entry?>(nil)

    /// An empty cache.
    init() {}

    /// The cached value of the Vault secret `secret`, if still fresh.
    func value(secret: String) -> String? {
        let now = Date().timeIntervalSince1970
        return entry.withLock { entry in
            guard let entry, entry.secret == secret, entry.expires > now else { return nil }
            return entry.value
        }
    }

    /// Remembers `value` of the Vault secret `secret`.
    func store(secret: String, value: String) {
        let expires = Date().timeIntervalSince1970 + Self.lifetime
        entry.withLock { $0 = Entry(secret: secret, value: value, expires: expires) }
    }

    /// Forgets the key.
    func forget() {
        entry.withLock { $0 = nil }
    }
}
