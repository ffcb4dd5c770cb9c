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

    /// Where a flush keeps the entries it took until they are written.
    var takenPath: String { path + ".flushing" }

    /// Appends `entry` (with `at` set to now when missing). The CLI may append while a kernel
    /// flushes: both hold an exclusive `flock` on `<file>.lock` while they touch the file,
    /// and the append is one `O_APPEND` write.
    public func add(_ entry: Entry) throws {
        var entry = entry
        if entry.details["at"] == nil { entry.details["at"] = RecoveryTarget.iso8601(Date()) }
        var line = try Self.encoded(entry)
        line.append(UInt8(ascii: "\n"))
        try withFileLock {
            let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                throw BackupError("cannot write \(path): \(String(cString: strerror(errno)))", hint: "check the permissions of the backup folder")
            }
            defer { close(descriptor) }
            let written = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard written == line.count else {
                throw BackupError("cannot write \(path): \(String(cString: strerror(errno)))", hint: "check the free space of the backup folder")
            }
        }
    }

    /// The waiting entries, oldest first (those a flush has taken and not yet written first).
    public func entries() -> [Entry] {
        Self.read(takenPath) + Self.read(path)
    }

    /// Writes each waiting entry with `write`, removing them once written; an entry that
    /// fails stays (with those after it, and any appended meanwhile) for the next attempt.
    /// The file work (the lock may wait for the CLI) runs on threads of its own
    /// (``ToolRunner/onOwnThread(_:)``), never on the cooperative pool.
    public func flush(_ write: @Sendable (Entry) async throws -> Void) async throws {
        let queue = self
        let waiting = try await ToolRunner.onOwnThread { try queue.take() }
        for (index, entry) in waiting.enumerated() {
            do {
                try await write(entry)
            } catch {
                let rest = Array(waiting[index...])
                try await ToolRunner.onOwnThread { try queue.putBack(rest) }
                throw error
            }
        }
        _ = try? await ToolRunner.onOwnThread { try FileManager.default.removeItem(atPath: queue.takenPath) }
    }

    /// Takes the file under the lock (entries appended from now on go to a new one) and
    /// returns what was taken, oldest first.
    private func take() throws -> [Entry] {
        try withFileLock {
            if !FileManager.default.fileExists(atPath: takenPath), FileManager.default.fileExists(atPath: path) {
                guard rename(path, takenPath) == 0 else {
                    throw BackupError("cannot rename \(path): \(String(cString: strerror(errno)))", hint: "check the permissions of the backup folder")
                }
            }
        }
        return Self.read(takenPath)
    }

    /// Puts `rest` back in front of what was appended meanwhile, under the lock.
    private func putBack(_ rest: [Entry]) throws {
        try withFileLock {
            var data = Data()
            for line in rest.compactMap({ try? Self.encoded($0) }) {
                data.append(line)
                data.append(UInt8(ascii: "\n"))
            }
            data.append(FileManager.default.contents(atPath: path) ?? Data())
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
            try? FileManager.default.removeItem(atPath: takenPath)
        }
    }

    private static func encoded(_ entry: Entry) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(entry)
    }

    private static func read(_ file: String) -> [Entry] {
        guard let data = FileManager.default.contents(atPath: file) else { return [] }
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? JSONDecoder().decode(Entry.self, from: Data($0)) }
    }

    /// Runs `body` holding an exclusive `flock` on `<file>.lock` (created 0600).
    private func withFileLock<T>(_ body: () throws -> T) throws -> T {
        let descriptor = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw BackupError("cannot open \(path).lock: \(String(cString: strerror(errno)))", hint: "check the permissions of the backup folder")
        }
        defer { close(descriptor) }
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else { throw BackupError("cannot lock \(path).lock: \(String(cString: strerror(errno)))", hint: "check the permissions of the backup folder") }
        }
        return try body()
    }
}
