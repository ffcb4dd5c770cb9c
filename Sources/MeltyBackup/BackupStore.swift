import Foundation

/// The backup folder's layout and its base backups' metadata.
///
/// ```
/// <backup dir>/wal/                      archived WAL (gzip-compressed, `<name>.gz`)
/// <backup dir>/base/<stamp>/             a plain-format base backup with its WAL and manifest
/// <backup dir>/base/<stamp>.json         its metadata (BaseBackup)
/// <backup dir>/restores/<stamp>/         clusters built by `meltybase backup restore`
/// <backup dir>/audit-pending.jsonl       audit entries waiting for the kernel (restores done offline)
/// ```
public struct BackupStore: Sendable {
    /// The backup folder.
    public let root: String

    /// The store in `root`.
    public init(root: String) {
        self.root = root
    }

    /// `<root>/wal`.
    public var walDirectory: String { root + "/wal" }
    /// `<root>/base`.
    public var baseDirectory: String { root + "/base" }
    /// `<root>/restores`.
    public var restoresDirectory: String { root + "/restores" }
    /// The archive.
    public var archive: WALArchive { WALArchive(directory: walDirectory) }

    /// The folder of backup `name`.
    public func path(of name: String) -> String { baseDirectory + "/" + name }

    /// Every complete base backup (with metadata), newest first.
    public func list() throws -> [BaseBackup] {
        let manager = FileManager.default
        guard manager.fileExists(atPath: baseDirectory) else { return [] }
        let decoder = Self.decoder
        var backups: [BaseBackup] = []
        for name in try manager.contentsOfDirectory(atPath: baseDirectory) where name.hasSuffix(".json") {
            let folder = String(name.dropLast(5))
            guard manager.fileExists(atPath: path(of: folder)), let data = manager.contents(atPath: baseDirectory + "/" + name),
                let backup = try? decoder.decode(BaseBackup.self, from: data)
            else { continue }
            backups.append(backup)
        }
        return backups.sorted { $0.startTime > $1.startTime }
    }

    /// Writes `backup`'s metadata (atomically).
    public func save(_ backup: BaseBackup) throws {
        let data = try Self.encoder.encode(backup)
        let path = baseDirectory + "/" + backup.name + ".json"
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        _ = chmod(path, 0o600)
    }

    /// Removes a backup's metadata first (so a half-removed backup is never listed), then its folder.
    public func remove(_ backup: BaseBackup) throws {
        try? FileManager.default.removeItem(atPath: baseDirectory + "/" + backup.name + ".json")
        try FileManager.default.removeItem(atPath: path(of: backup.name))
    }

    /// Removes what a backup cut short by a crash or a kill left (a `.partial` folder, or a
    /// folder without metadata): nothing lists it and nothing else would remove it. Call it
    /// holding ``withLock(_:)``, so no backup is in progress.
    public func removeIncomplete() {
        let manager = FileManager.default
        let names = Set((try? manager.contentsOfDirectory(atPath: baseDirectory)) ?? [])
        for name in names where !name.hasSuffix(".json") && (name.hasSuffix(".partial") || !names.contains(name + ".json")) {
            try? manager.removeItem(atPath: baseDirectory + "/" + name)
        }
    }

    /// A new backup name for `date`: `20261206T012345Z`, with `-2`, `-3`... when taken.
    public func newName(at date: Date) -> String {
        let stamp = Self.stamp(date)
        var name = stamp
        var counter = 2
        while FileManager.default.fileExists(atPath: path(of: name)) || FileManager.default.fileExists(atPath: path(of: name) + ".partial") {
            name = "\(stamp)-\(counter)"
            counter += 1
        }
        return name
    }

    /// `date` as a compact UTC stamp (`20261206T012345Z`), for folder names.
    public static func stamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: date)
    }

    /// Runs `body` holding the store's lock (`<root>/.lock`, flock): one backup or prune at a time.
    public func withLock<T>(_ body: () async throws -> T) async throws -> T {
        let descriptor = open(root + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw BackupError("cannot open \(root)/.lock: \(String(cString: strerror(errno)))", hint: "check that the backup folder exists and is writable")
        }
        defer { close(descriptor) }
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            try await Task.sleep(for: .milliseconds(200))
        }
        defer { flock(descriptor, LOCK_UN) }
        return try await body()
    }

    /// Total bytes of the files below `path`.
    public static func size(of path: String) -> UInt64 {
        guard let enumerator = FileManager.default.enumerator(atPath: path) else { return 0 }
        var total: UInt64 = 0
        while let item = enumerator.nextObject() as? String {
            if let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + item), attributes[.type] as? FileAttributeType == .typeRegular {
                total += (attributes[.size] as? NSNumber)?.uint64Value ?? 0
            }
        }
        return total
    }

    /// JSON with ISO 8601 dates, sorted keys.
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(RecoveryTarget.iso8601(date))
        }
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// Reads what ``encoder`` writes.
    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = RecoveryTarget.parse(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a timestamp: \(text)")
            }
            return date
        }
        return decoder
    }
}
