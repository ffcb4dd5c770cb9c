import Foundation

/// Where the cluster of a data directory the Postgres account cannot enter lives: a folder
/// under `/var/lib/meltybase` named in the data directory's `relocated-cluster` file.
///
/// The name is random per data directory, not derived from its path: a data directory
/// deleted and made again at the same path gets a new, empty cluster, instead of its
/// predecessor's (whose sealed secrets need keys the new one does not have). Data
/// directories from before the file keep the folder named by their path's hash.
public enum RelocatedCluster {
    /// The file in the data directory that names the folder.
    public static let markerName = "relocated-cluster"
    /// Where relocated clusters live.
    public static let root = "/var/lib/meltybase"

    /// The folder for `dataDirectory` (holding `postgres/`, `postgres-socket/`, `backups/`),
    /// chosen and recorded on first use.
    public static func folder(for dataDirectory: String) throws -> String {
        let marker = (dataDirectory as NSString).appendingPathComponent(markerName)
        if let text = try? String(contentsOfFile: marker, encoding: .utf8) {
            let named = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard named.hasPrefix(root + "/"), !named.contains(".."), named.utf8.count < 200 else {
                throw EmbeddedServiceError("\(marker) does not name a folder under \(root)", hint: "remove the file to start a new cluster, or restore it")
            }
            return named
        }
        let fileManager = FileManager.default
        let legacy = root + "/" + StableHash.hex(dataDirectory).prefix(16)
        // A data directory that has run before (keys, Redis) and a cluster at the old name: keep it.
        let lived = ["mfa-secret.key", "redis", "audit-signing.key"].contains { fileManager.fileExists(atPath: dataDirectory + "/" + $0) }
        var random = [UInt8](repeating: 0, count: 8)
        for index in random.indices { random[index] = UInt8.random(in: 0...255) }
        let folder = lived && fileManager.fileExists(atPath: legacy) ? legacy : root + "/" + random.map { String(format: "%02x", $0) }.joined()
        do {
            try fileManager.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
            try Data((folder + "\n").utf8).write(to: URL(fileURLWithPath: marker), options: .withoutOverwriting)
        } catch {
            // Another process wrote it first: use its choice.
            if let text = try? String(contentsOfFile: marker, encoding: .utf8) { return text.trimmingCharacters(in: .whitespacesAndNewlines) }
            throw EmbeddedServiceError("cannot write \(marker): \(error)", hint: "the data directory must be writable by the account running meltybase")
        }
        return folder
    }
}
