import Crypto
import Foundation
import MeltyPostgres

/// Applies a folder of SQL migrations to a portal database: files sorted by name, each
/// applied once, in its own transaction, recorded with its checksum in
/// `meltybase_internal.migrations`. A file changed after it was applied is reported, not re-run.
public struct MigrationRunner: Sendable {
    /// One migration file and its state.
    public struct Migration: Sendable {
        /// The file's name.
        public var name: String
        /// SHA-256 of the file, hex.
        public var checksum: String
        /// `applied`, `pending` or `changed` (applied, but the file differs now).
        public var state: String
    }

    /// Failures a user can act on.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        /// What failed and what to do.
        public var description: String
    }

    let connection: PostgresConnection
    let directory: String

    /// A runner over `connection` (the portal database, as its owner) for the `.sql` files in `directory`.
    public init(connection: PostgresConnection, directory: String) {
        self.connection = connection
        self.directory = directory
    }

    /// Every `.sql` file with its state.
    public func status() async throws -> [Migration] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure(description: "\(directory) is not a folder of .sql files")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sql") }.sorted()
        let recorded = try await connection.query("SELECT name, checksum FROM meltybase_internal.migrations").rows
        let applied = Dictionary(recorded.map { ($0[0] ?? "", $0[1] ?? "") }, uniquingKeysWith: { first, _ in first })
        return try files.map { name in
            let checksum = try Self.checksum(of: directory + "/" + name)
            let state = applied[name].map { $0 == checksum ? "applied" : "changed" } ?? "pending"
            return Migration(name: name, checksum: checksum, state: state)
        }
    }

    /// Applies pending migrations in order (none with `dryRun`); returns the ones applied
    /// (or that would be). Stops at the first failure, naming the file and the error.
    public func apply(dryRun: Bool) async throws -> [Migration] {
        let pending = try await status().filter { $0.state == "pending" }
        if dryRun { return pending }
        var done: [Migration] = []
        for migration in pending {
            let sql = try String(contentsOfFile: directory + "/" + migration.name, encoding: .utf8)
            do {
                try await connection.execute("BEGIN")
                try await connection.execute(sql)
                try await connection.query("INSERT INTO meltybase_internal.migrations (name, checksum) VALUES ($1, $2)", [migration.name, migration.checksum])
                try await connection.execute("COMMIT")
                done.append(migration)
            } catch let error as PostgresError {
                _ = try? await connection.execute("ROLLBACK")
                var message = "\(migration.name) failed and was rolled back: \(error.message)"
                if let code = error.sqlState { message += " (SQLSTATE \(code))" }
                if let position = error.position { message += " at character \(position)" }
                if let hint = error.hint { message += "; hint: \(hint)" }
                throw Failure(description: message + (done.isEmpty ? "" : "; applied before it: " + done.map(\.name).joined(separator: ", ")))
            }
        }
        return done
    }

    static func checksum(of path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure(description: "cannot read \(path)") }
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
