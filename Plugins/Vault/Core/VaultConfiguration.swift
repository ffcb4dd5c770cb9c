import Foundation
import MeltyJSON

/// The Vault's validated settings: the `[plugins.vault.config]` table and the
/// `MELTYBASE_MASTER_KEY*` environment variables, parsed once at start-up.
public struct VaultConfiguration: Sendable {
    /// Environment variable holding the current master key (64 hex characters).
    public static let masterKeyVariable = "MELTYBASE_MASTER_KEY"
    /// Environment variable holding the previous master key during a rotation.
    public static let previousMasterKeyVariable = "MELTYBASE_MASTER_KEY_PREVIOUS"
    /// Keys `[plugins.vault.config]` accepts.
    public static let knownKeys = ["master_key_file", "previous_master_key_file", "max_value_bytes", "database_connections"]

    /// The master keys.
    public var keys: MasterKeyRing
    /// Largest secret value accepted, in bytes (default 64 KiB).
    public var maxValueBytes: Int
    /// Postgres connections the plugin keeps (default 4).
    public var databaseConnections: Int

    /// Parses `config` (the plugin's TOML table as JSON) and `environment`. The variable
    /// wins over the file when both are given. Throws ``VaultError/invalidConfiguration(_:)``
    /// naming the setting at fault; key text never appears in a message.
    public init(config: [String: JSONValue], environment: [String: String]) throws {
        if let unknown = config.keys.sorted().first(where: { !Self.knownKeys.contains($0) }) {
            throw VaultError.invalidConfiguration("[plugins.vault.config] key '\(unknown)': unknown key; expected one of \(Self.knownKeys.joined(separator: ", "))")
        }
        let current: MasterKey
        if let text = environment[Self.masterKeyVariable], !text.isEmpty {
            current = try MasterKey.parse(hex: text, source: Self.masterKeyVariable)
        } else if let path = config["master_key_file"] {
            guard let path = path.stringValue, !path.isEmpty else {
                throw VaultError.invalidConfiguration("[plugins.vault.config] master_key_file must be a path")
            }
            current = try MasterKey.load(file: path, source: "master_key_file")
        } else {
            throw VaultError.invalidConfiguration(
                "no master key: set \(Self.masterKeyVariable) (64 hex characters, e.g. from `openssl rand -hex 32`) or [plugins.vault.config] master_key_file (a file of mode 0600)"
            )
        }
        var previous: [MasterKey] = []
        if let text = environment[Self.previousMasterKeyVariable], !text.isEmpty {
            previous.append(try MasterKey.parse(hex: text, source: Self.previousMasterKeyVariable))
        }
        if let path = config["previous_master_key_file"] {
            guard let path = path.stringValue, !path.isEmpty else {
                throw VaultError.invalidConfiguration("[plugins.vault.config] previous_master_key_file must be a path")
            }
            previous.append(try MasterKey.load(file: path, source: "previous_master_key_file"))
        }
        keys = MasterKeyRing(current: current, previous: previous)
        maxValueBytes = try Self.integer(config, "max_value_bytes", default: 64 * 1024, range: 1...(1 << 20))
        databaseConnections = try Self.integer(config, "database_connections", default: 4, range: 1...64)
    }

    /// Parses the plugin's configuration JSON bytes (as the kernel hands them over).
    public init(configJSON: String, environment: [String: String]) throws {
        let object: [String: JSONValue]
        if configJSON.trimmingCharacters(in: .whitespaces).isEmpty {
            object = [:]
        } else if let parsed = try? JSONDecoder().decode([String: JSONValue].self, from: Data(configJSON.utf8)) {
            object = parsed
        } else {
            throw VaultError.invalidConfiguration("[plugins.vault.config] must be a table")
        }
        try self.init(config: object, environment: environment)
    }

    private static func integer(_ config: [String: JSONValue], _ key: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let raw = config[key] else { return value }
        guard let number = raw.intValue, range.contains(number) else {
            throw VaultError.invalidConfiguration("[plugins.vault.config] \(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }
}
