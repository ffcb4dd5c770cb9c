import Foundation

/// Everything the Vault can refuse or fail at, with a message a user can act on.
/// No case ever carries a secret value or key material.
public enum VaultError: Error, CustomStringConvertible, Equatable {
    /// The master key or the plugin configuration is unusable; says which setting and why.
    case invalidConfiguration(String)
    /// An unexpected failure inside OpenSSL or libsodium.
    case crypto(String)
    /// AES-GCM refused the record: wrong key, or ciphertext, nonce, tag or bound data
    /// (portal, name, version) altered or moved.
    case authenticationFailed
    /// A data key is wrapped under a master key this process was not given.
    case unknownMasterKey(keyID: String, portal: String, configured: [String])
    /// The cluster's vault uses a master key this process does not hold (503).
    case clusterMasterKey(registered: String, configured: [String])
    /// A request argument is malformed (name, value, version).
    case invalidArgument(String)
    /// No such secret (or version, or portal key).
    case notFound(String)
    /// The name is taken (possibly by a soft-deleted secret).
    case conflict(String)
    /// A stored record is malformed (not something AES-GCM even gets to check).
    case corruptRecord(String)
    /// Postgres failed or is unreachable.
    case database(String)

    /// The message.
    public var description: String {
        switch self {
        case .invalidConfiguration(let text), .crypto(let text), .invalidArgument(let text), .notFound(let text),
            .conflict(let text), .corruptRecord(let text), .database(let text):
            return text
        case .authenticationFailed:
            return
                "the record does not authenticate under its key (AES-GCM tag mismatch): wrong master key, or the ciphertext was altered or moved to another secret, version or portal"
        case .clusterMasterKey(let registered, let configured):
            return "the vault of the kernels sharing this database uses master key id \(registered), but this process has master key id(s) "
                + "\(configured.joined(separator: ", ")); give every kernel the cluster's key (MELTYBASE_MASTER_KEY or master_key_file; docs/cluster.md)"
        case .unknownMasterKey(let keyID, let portal, let configured):
            return "the data key of portal \"\(portal)\" is wrapped under master key id \(keyID), but this process has master key id(s) \(configured.joined(separator: ", ")); "
                + "configure that key as MELTYBASE_MASTER_KEY (or MELTYBASE_MASTER_KEY_PREVIOUS while rotating)"
        }
    }
}
