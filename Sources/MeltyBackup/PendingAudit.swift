import Foundation

/// Audit entries about backups that wait for the system database: a restore done while
/// no kernel runs, or a scheduled backup whose entry could not be written at once. They are
/// kept, one JSON object a line, in `<backup dir>/audit-pending.jsonl` and written into the
/// audit chain by the next kernel (``BackupScheduler`` flushes them first).
public struct PendingAudit: Sendable {
    /// One entry.
    public struct Entry: Codable, Sendable, Equatable {
        /// Who acted (`cli`, `kernel`).
        public var actor: String
        /// `backup.created`, `backup.restored`, `backup.replaced`.
        public var action: String
        /// What it was done to (a backup's name, a cluster path).
        public var target: String
        /// Details; `at` is when it happened.
        public var details: [String: String]

        /// An entry.
        public init(actor: String, action: String, target: String, details: [String: String]) {
            self.actor = actor
            self.action = action
            self.target = target
            self.details = details
        }
    }

    /// The file.
    public let path: String

    /// The queue of the backup folder `root`.
    public init(root: String) {
        path = root + "/audit-pending.jsonl"
    }

    /// Appends `entry` (with `at` set to now when missing).
    public func add(_ entry: Entry) throws {
        var entry = entry
        if entry.details["at"] == nil { entry.details["at"] = RecoveryTarget.iso8601(Date()) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try encoder.encode(entry)
        line.append(UInt8(ascii: "\n"))
        if !FileManager.default.fileExists(atPath: path) {
            FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw BackupError("cannot write \(path)", hint: "check the permissions of the backup folder")
        }
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        handle.write(line)
    }

    /// The waiting entries, oldest first.
    public func entries() -> [Entry] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? JSONDecoder().decode(Entry.self, from: Data($0)) }
    }

    /// Writes each waiting entry with `write`, removing the file once all are written; an
    /// entry that fails stays (with those after it) for the next attempt.
    public func flush(_ write: @Sendable (Entry) async throws -> Void) async throws {
        let waiting = entries()
        guard !waiting.isEmpty else { return }
        for (index, entry) in waiting.enumerated() {
            do {
                try await write(entry)
            } catch {
                let rest = waiting[index...].compactMap { try? JSONEncoder().encode($0) }
                var data = Data()
                for line in rest {
                    data.append(line)
                    data.append(UInt8(ascii: "\n"))
                }
                try data.write(to: URL(fileURLWithPath: path), options: .atomic)
                throw error
            }
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}
