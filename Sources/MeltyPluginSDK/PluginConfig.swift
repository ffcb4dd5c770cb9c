import Foundation
import MeltyJSON

/// A plugin's `[plugins.<name>.config]` table, as the kernel hands it over (TOML as JSON):
/// typed values, and accessors whose errors name the key.
public struct PluginConfig: Sendable, Equatable {
    /// The table's keys and values.
    public let values: [String: JSONValue]

    /// An empty table.
    public init() {
        values = [:]
    }

    /// A table of `values`.
    public init(_ values: [String: JSONValue]) {
        self.values = values
    }

    /// The table in JSON `bytes`; empty bytes are an empty table, anything but an object is refused.
    public init(json bytes: [UInt8]) throws {
        if bytes.isEmpty {
            self.init()
            return
        }
        guard let object = JSONValue.object(json: bytes) else { throw PluginError.invalid("configuration must be a JSON object") }
        self.init(object)
    }

    /// The value of `key`, if present.
    public subscript(key: String) -> JSONValue? { values[key] }

    /// The keys present.
    public var keys: Dictionary<String, JSONValue>.Keys { values.keys }

    /// The table as JSON text (keys sorted).
    public var json: String {
        (try? JSONValue.serialize(values)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// The string at `key`, nil when absent; `plugin` names the plugin in the error.
    public func string(_ key: String, plugin: String) throws -> String? {
        guard let value = values[key] else { return nil }
        guard let string = value.stringValue else { throw PluginError.invalid("\(plugin): config key '\(key)' must be a string, found \(value.kind)") }
        return string
    }

    /// The integer at `key` within `range`, nil when absent.
    public func integer(_ key: String, in range: ClosedRange<Int>, plugin: String) throws -> Int? {
        guard let value = values[key] else { return nil }
        guard let number = value.intValue, range.contains(number) else {
            throw PluginError.invalid("\(plugin): config key '\(key)' must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    /// The list of strings at `key`, nil when absent.
    public func strings(_ key: String, plugin: String) throws -> [String]? {
        guard let value = values[key] else { return nil }
        guard let list = value.arrayValue?.compactMap(\.stringValue), list.count == value.arrayValue?.count else {
            throw PluginError.invalid("\(plugin): config key '\(key)' must be a list of strings")
        }
        return list
    }

    /// The boolean at `key`, nil when absent.
    public func boolean(_ key: String, plugin: String) throws -> Bool? {
        guard let value = values[key] else { return nil }
        guard let flag = value.boolValue else { throw PluginError.invalid("\(plugin): config key '\(key)' must be true or false, found \(value.kind)") }
        return flag
    }

    /// The nested table at `key` (`[plugins.<name>.config.<key>]`) as a config of its own, nil
    /// when absent; its errors name the key as `<key>.<inner key>`.
    public func table(_ key: String, plugin: String) throws -> PluginConfig? {
        guard let value = values[key] else { return nil }
        guard let object = value.objectValue else { throw PluginError.invalid("\(plugin): config key '\(key)' must be a table ([plugins.\(plugin).config.\(key)])") }
        return PluginConfig(object)
    }

    /// Refuses a key not in `known`, naming it and the known ones.
    public func refuseUnknownKeys(_ known: Set<String>, plugin: String) throws {
        if let unknown = values.keys.sorted().first(where: { !known.contains($0) }) {
            throw PluginError.invalid("\(plugin): unknown config key '\(unknown)'; known keys: \(known.sorted().joined(separator: ", "))")
        }
    }
}
