import MeltyPluginABI
import NIOConcurrencyHelpers

/// Named, versioned C function tables exported by plugins (name `secrets`, major 1 = `secrets.v1`).
///
/// Plugins never link each other: one exports a table from its `init`, another looks it up
/// for a portal, and gets the exporter's instance for that same portal, or a refusal when
/// the exporter is not enabled there.
final class ServiceRegistry: Sendable {
    struct Export: Sendable {
        let plugin: String
        let table: SharedPointer<UnsafeRawPointer>
        let size: Int
    }

    private let exports = NIOLockedValueBox<[String: Export]>([:])

    private static func key(_ name: String, _ major: UInt32) -> String { "\(name).v\(major)" }

    /// Records an export; returns the refusal when the name and major are taken.
    func export(name: String, major: UInt32, plugin: String, table: SharedPointer<UnsafeRawPointer>, size: Int) -> String? {
        exports.withLockedValue { exports in
            let key = Self.key(name, major)
            if let existing = exports[key], existing.plugin != plugin {
                return "service \(key) is already exported by plugin \"\(existing.plugin)\""
            }
            exports[key] = Export(plugin: plugin, table: table, size: size)
            return nil
        }
    }

    /// Drops every export of `plugin` (its init failed, or it was shut down).
    func removeAll(plugin: String) {
        exports.withLockedValue { exports in exports = exports.filter { $0.value.plugin != plugin } }
    }

    /// The export for `name` and `major`, if any.
    func lookup(name: String, major: UInt32) -> Export? {
        exports.withLockedValue { $0[Self.key(name, major)] }
    }

    /// Every exported service key and its plugin.
    var all: [(String, String)] {
        exports.withLockedValue { $0.map { ($0.key, $0.value.plugin) }.sorted { $0.0 < $1.0 } }
    }
}
