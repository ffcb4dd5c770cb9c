import Synchronization

/// Unwrapped portal data keys, so a secret read costs one round trip for its row instead
/// of an unwrap (and a key lookup) per read.
///
/// Bounded: at most ``capacity`` keys (the least recently used goes first), a key not
/// used for ``idleLimit`` is dropped at the next insert, and caching a portal's key drops
/// that portal's other keys (retiring ones, during or after a rotation). Keyed by portal and data key id;
/// each entry remembers the wrapped form it came from, so a key re-wrapped by a master-key
/// rotation (in this process or another) is unwrapped again, not served from the cache.
/// The bytes live in ``SecretBytes`` (locked in memory, wiped when the last user lets go).
/// ``removeAll()`` runs at rotation and shutdown.
public final class DataKeyCache: Sendable {
    /// Keys kept by default.
    public static let defaultCapacity = 256
    /// How long an unused key stays by default.
    public static let defaultIdleLimit: Duration = .seconds(300)

    /// The most keys kept.
    public let capacity: Int
    /// How long a key may go unused before it is dropped.
    public let idleLimit: Duration

    private struct Key: Hashable {
        var portal: String
        var id: String
    }

    private struct Entry {
        var key: SecretBytes
        var wrapped: [UInt8]
        var lastUse: ContinuousClock.Instant
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// Bumped by ``removeAll()``: an unwrap that started before it is not cached after it.
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())

    /// A cache of at most `capacity` keys.
    public init(capacity: Int = DataKeyCache.defaultCapacity, idleLimit: Duration = DataKeyCache.defaultIdleLimit) {
        self.capacity = max(1, capacity)
        self.idleLimit = idleLimit
    }

    /// The cached key `id` of `portal` when it was unwrapped from `wrapped`; an entry from
    /// another wrapping is dropped.
    func key(portal: String, id: String, wrapped: [UInt8]) -> SecretBytes? {
        let now = ContinuousClock.now
        let (hit, dropped): (SecretBytes?, Entry?) = state.withLock { state in
            let key = Key(portal: portal, id: id)
            guard var entry = state.entries[key] else { return (nil, nil) }
            guard entry.wrapped == wrapped else { return (nil, state.entries.removeValue(forKey: key)) }
            entry.lastUse = now
            state.entries[key] = entry
            return (entry.key, nil)
        }
        withExtendedLifetime(dropped) {}  // released (and wiped) outside the lock
        return hit
    }

    /// The generation to pass to ``insert(_:portal:id:wrapped:unlessClearedSince:)``.
    var generation: UInt64 { state.withLock { $0.generation } }

    /// Caches `key`, unless ``removeAll()`` ran since `generation` was read.
    func insert(_ key: SecretBytes, portal: String, id: String, wrapped: [UInt8], unlessClearedSince generation: UInt64) {
        let now = ContinuousClock.now
        let evicted: [Entry] = state.withLock { state in
            guard state.generation == generation else { return [] }
            // Idle keys go, and so does another cached key of this portal: a portal has one
            // data key outside a rotation, so that one is retiring (a rotation in another
            // process then leaves no retired key behind once the portal is read again).
            let stale = state.entries.filter { now - $0.value.lastUse > idleLimit || ($0.key.portal == portal && $0.key.id != id) }
            var evicted = Array(stale.values)
            for name in stale.keys { state.entries[name] = nil }
            let slot = Key(portal: portal, id: id)
            if state.entries[slot] == nil && state.entries.count >= capacity,
                let oldest = state.entries.min(by: { $0.value.lastUse < $1.value.lastUse })
            {
                evicted.append(oldest.value)
                state.entries[oldest.key] = nil
            }
            if let replaced = state.entries.updateValue(Entry(key: key, wrapped: wrapped, lastUse: now), forKey: slot) {
                evicted.append(replaced)
            }
            return evicted
        }
        withExtendedLifetime(evicted) {}
    }

    /// Drops every key (rotation, shutdown).
    public func removeAll() {
        let dropped: [Key: Entry] = state.withLock { state in
            state.generation &+= 1
            defer { state.entries.removeAll() }
            return state.entries
        }
        withExtendedLifetime(dropped) {}
    }

    /// Drops `portal`'s keys (its data key was rotated).
    public func remove(portal: String) {
        let dropped: [Entry] = state.withLock { state in
            state.generation &+= 1
            let names = state.entries.keys.filter { $0.portal == portal }
            return names.compactMap { state.entries.removeValue(forKey: $0) }
        }
        withExtendedLifetime(dropped) {}
    }

    /// How many keys are cached.
    public var count: Int { state.withLock { $0.entries.count } }

    /// Whether data key `id` of `portal` is cached (tests, diagnostics).
    public func contains(portal: String, id: String) -> Bool {
        state.withLock { $0.entries[Key(portal: portal, id: id)] != nil }
    }
}
