import Foundation
import Logging
import MeltyPostgres
import MeltyProcess
import NIOConcurrencyHelpers

/// A private Postgres cluster in the data directory, started as a supervised child.
///
/// Postgres refuses to run as root; when the kernel is root the cluster belongs to an
/// unprivileged account (`postgres` when the Debian package created it, otherwise a
/// `meltybase` system user the kernel creates) and every server command runs through
/// `setpriv`. The server listens on a unix socket only (no TCP), in a 0700 directory.
public final class EmbeddedPostgres: Sendable {
    /// Cluster directory (`PGDATA`).
    public let clusterDirectory: String
    /// Directory holding the unix socket.
    public let socketDirectory: String
    /// The folder of the Postgres server binaries (initdb, postgres, pg_basebackup, ...).
    public let binDirectory: String
    /// The unprivileged account Postgres runs as when the kernel is root; nil otherwise.
    public let account: SystemAccount?
    /// The backup folder (`wal/` holds the archived WAL, `base/` the base backups): the
    /// configured one, else `backups` beside the cluster (in the data directory, or beside a
    /// relocated cluster under /var/lib/meltybase).
    public let backupDirectory: String
    /// Continuous WAL archiving into `backupDirectory/wal`; nil: no archiving.
    public let archiving: Archiving?
    private let logger: Logger
    private let supervised = NIOLockedValueBox<SupervisedProcess?>(nil)

    /// The libpq conninfo of the embedded cluster's `meltybase` database.
    public var conninfo: String { "host=\(socketDirectory) port=5432 user=meltybase dbname=meltybase connect_timeout=5" }

    /// How the cluster archives its WAL (``WALArchiveCommands/archive(directory:)``: each
    /// file is gzip-compressed to a temporary file, fsynced and renamed, so success means
    /// durably stored).
    public struct Archiving: Sendable, Equatable {
        /// The backup folder; nil: `backups` beside the cluster.
        public var directory: String?
        /// `archive_timeout`: a partly filled segment is archived after at most this many seconds.
        public var timeoutSeconds: Int

        /// Archiving into `directory` (nil: the default folder) every `timeoutSeconds` at the latest.
        public init(directory: String? = nil, timeoutSeconds: Int = 60) {
            self.directory = directory
            self.timeoutSeconds = timeoutSeconds
        }
    }

    /// Prepares paths and the account; does not start anything. With `archiving`, the
    /// server archives every WAL segment into the backup folder's `wal/`.
    public init(dataDirectory: String, logger: Logger, archiving: Archiving? = nil) throws {
        self.logger = logger
        guard let bin = PostgresBinaries.find() else {
            throw EmbeddedServiceError(
                "Postgres server binaries (initdb, postgres) not found",
                hint: "install them with `apt-get install postgresql-15` (scripts/setup.sh does), or set [database] url to use an existing server")
        }
        binDirectory = bin
        let runAs = getuid() == 0 ? try SystemAccount.unprivilegedForPostgres(logger: logger) : nil
        account = runAs
        var cluster = (dataDirectory as NSString).appendingPathComponent("postgres")
        var relocated = false
        if let account = runAs, !account.canReach(directory: dataDirectory) {
            // The data directory sits below a folder the unprivileged account cannot enter
            // (for example /root): keep the cluster in a per-data-directory folder it owns.
            cluster = try RelocatedCluster.folder(for: dataDirectory) + "/postgres"
            logger.notice("the Postgres cluster lives outside the data directory because \(account.name) cannot enter it", metadata: ["cluster": "\(cluster)"])
            relocated = true
        }
        clusterDirectory = cluster
        self.archiving = archiving
        backupDirectory = archiving?.directory ?? (cluster as NSString).deletingLastPathComponent + "/backups"
        if relocated, archiving != nil, archiving?.directory == nil {
            logger.notice("the backup folder lives beside the relocated cluster", metadata: ["backups": "\(backupDirectory)"])
        }
        let preferredSocket = (cluster as NSString).deletingLastPathComponent + "/postgres-socket"
        socketDirectory =
            preferredSocket.utf8.count + 20 < 100
            ? preferredSocket : PrivateSocketDirectory.fallback(for: cluster, name: "pg")
    }

    /// Initialises the cluster on first use, starts it and waits until it accepts connections.
    public func start() throws {
        let fileManager = FileManager.default
        let parent = (clusterDirectory as NSString).deletingLastPathComponent
        if !fileManager.fileExists(atPath: parent) {
            try fileManager.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        }
        try fileManager.createDirectory(atPath: clusterDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if socketDirectory.hasPrefix(parent + "/") {
            try fileManager.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } else {
            try PrivateSocketDirectory.prepare(socketDirectory, owner: account?.uid ?? getuid())
        }
        if let account {
            try account.own(clusterDirectory)
            try account.own(socketDirectory)
        }
        let archiveArguments = try prepareArchive()
        let fresh = !fileManager.fileExists(atPath: clusterDirectory + "/PG_VERSION")
        if fresh {
            logger.notice("initialising the embedded Postgres cluster (first start only)", metadata: ["cluster": "\(clusterDirectory)"])
            try runToCompletion(
                binDirectory + "/initdb",
                [
                    "-D", clusterDirectory, "-U", "meltybase", "-A", "trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
                ])
        }
        stopLeftoverServer()
        let logFile = (clusterDirectory as NSString).deletingLastPathComponent + "/postgres.log"
        FileManager.default.createFile(atPath: logFile, contents: nil, attributes: [.posixPermissions: 0o600])
        let serverArguments =
            Self.serverCommand(binDirectory: binDirectory, cluster: clusterDirectory, socketDirectory: socketDirectory) + archiveArguments
        let (executable, arguments) = command(serverArguments)
        let process = SupervisedProcess(name: "embedded Postgres", executable: executable, arguments: arguments, logFile: logFile, logger: logger)
        logger.notice("starting the embedded Postgres", metadata: ["socket": "\(socketDirectory)"])
        try process.start()
        supervised.withLockedValue { $0 = process }
        try waitUntilReady(timeout: 60)
        if fresh {
            try BlockingPostgres.run(conninfo.replacingOccurrences(of: "dbname=meltybase", with: "dbname=postgres")) { connection in
                _ = try await connection.execute("CREATE DATABASE meltybase")
            }
        }
        logger.notice("embedded Postgres is ready")
    }

    /// Creates the backup folder and its `wal/` (0700, the Postgres account's) and returns
    /// the server's archiving settings; none without ``archiving``.
    private func prepareArchive() throws -> [String] {
        guard let archiving else { return ["-c", "archive_mode=off"] }
        for tool in EmbeddedTools.archiveTools where EmbeddedTools.systemProgram(tool) == nil {
            throw EmbeddedServiceError(
                "`\(tool)` is not installed (looked in /usr/bin and /bin), so WAL cannot be archived",
                hint: "install it (`apt-get install gzip coreutils diffutils`), or set [backup] enabled = false")
        }
        let wal = backupDirectory + "/wal"
        // A configured folder's missing parents: 0711, so the Postgres account may pass through.
        let parent = (backupDirectory as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: parent) {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
        }
        for folder in [backupDirectory, wal, backupDirectory + "/base"] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            if let runAs = account { try runAs.own(folder) }
        }
        if let runAs = account, !runAs.canReach(directory: wal) {
            throw EmbeddedServiceError(
                "the backup folder \(backupDirectory) is below a folder the account \(runAs.name) (which runs Postgres) cannot enter",
                hint: "set [backup] directory to a folder \(runAs.name) can reach, e.g. /var/lib/meltybase/backups")
        }
        return [
            "-c", "archive_mode=on", "-c", "archive_command=\(WALArchiveCommands.archive(directory: wal))",
            "-c", "archive_timeout=\(archiving.timeoutSeconds)",
            // New segments are then created zero-filled (wal_init_zero), so the unused tail of
            // a segment closed early by archive_timeout is zeros and compresses to almost nothing.
            "-c", "wal_recycle=off",
            // The kernel's WALSegmentSwitcher asks pg_last_committed_xact() whether to switch.
            "-c", "track_commit_timestamp=on",
        ]
    }

    /// The `postgres` command line of every server on a MeltyBase cluster (the kernel's, and
    /// a restore's temporary one): a unix socket in `socketDirectory` only (no TCP), logical
    /// WAL, and the connection and replication limits.
    public static func serverCommand(binDirectory: String, cluster: String, socketDirectory: String) -> [String] {
        [
            binDirectory + "/postgres", "-D", cluster, "-k", socketDirectory, "-p", "5432",
            "-c", "listen_addresses=", "-c", "unix_socket_permissions=0700", "-c", "wal_level=logical",
            "-c", "max_connections=300", "-c", "shared_buffers=32MB", "-c", "max_replication_slots=64", "-c", "max_wal_senders=64",
            // A replication slot nobody reads (a portal whose Realtime is off) may hold back at
            // most this much WAL; past it the server invalidates the slot instead of filling the disk.
            "-c", "max_slot_wal_keep_size=2GB",
        ]
    }

    /// Stops the server (fast shutdown: active transactions roll back, data is flushed).
    public func stop() {
        supervised.withLockedValue { $0 }?.stop(signal: SIGINT, timeout: 20)
        supervised.withLockedValue { $0 = nil }
    }

    /// The supervised server process (for restart notifications and tests).
    var process: SupervisedProcess? { supervised.withLockedValue { $0 } }

    private func waitUntilReady(timeout: Double) throws {
        let deadline = Date().addingTimeInterval(timeout)
        let probe = conninfo.replacingOccurrences(of: "dbname=meltybase", with: "dbname=postgres")
        var lastError = ""
        while Date() < deadline {
            do {
                try BlockingPostgres.run(probe) { _ in }
                return
            } catch {
                lastError = "\(error)"
                usleep(100_000)
            }
        }
        throw EmbeddedServiceError(
            "the embedded Postgres did not accept connections within \(Int(timeout)) s: \(lastError)",
            hint: "see \((clusterDirectory as NSString).deletingLastPathComponent)/postgres.log")
    }

    /// Whether a server is running on this cluster (started by a kernel or left behind).
    public var isRunning: Bool { runningPID != nil }

    private var runningPID: Int32? {
        guard let text = try? String(contentsOfFile: clusterDirectory + "/postmaster.pid", encoding: .utf8),
            let pid = Int32(text.split(separator: "\n").first ?? ""), kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    /// A server left running by a kernel that was killed: stop it so this one supervises.
    private func stopLeftoverServer() {
        guard let pid = runningPID else { return }
        logger.notice("stopping a Postgres left running by an earlier kernel", metadata: ["pid": "\(pid)"])
        kill(pid, SIGINT)
        let deadline = Date().addingTimeInterval(20)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(50_000) }
    }

    /// `arguments` (a program and its arguments) as the account Postgres runs as: through
    /// `setpriv` when the kernel is root, unchanged otherwise.
    public func command(_ arguments: [String]) -> (String, [String]) {
        guard let account else { return (arguments[0], Array(arguments.dropFirst())) }
        return account.command(arguments)
    }

    private func runToCompletion(_ executable: String, _ arguments: [String]) throws {
        let (path, fullArguments) = command([executable] + arguments)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = fullArguments
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw EmbeddedServiceError(
                "\((executable as NSString).lastPathComponent) failed: \(String(decoding: output, as: UTF8.self))",
                hint: "check that \(clusterDirectory) is writable by the account running Postgres")
        }
    }
}

/// Finds the Postgres server binaries (Debian keeps them off PATH).
public enum PostgresBinaries {
    /// The folder holding initdb and postgres, or nil when no Postgres server is installed.
    public static func find() -> String? {
        var candidates: [String] = []
        if let bin = run("/usr/bin/env", ["pg_config", "--bindir"]) { candidates.append(bin) }
        candidates += ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/local/pgsql/bin", "/usr/local/bin", "/usr/bin"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0 + "/postgres") && FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }
    }

    /// Output of a command, trimmed, or nil when it fails.
    static func run(_ executable: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A failure starting an embedded service, with what to do about it.
public struct EmbeddedServiceError: Error, CustomStringConvertible {
    /// What failed.
    public var message: String
    /// What to do.
    public var hint: String

    /// A failure saying `message`, with `hint` for what to do.
    public init(_ message: String, hint: String) {
        self.message = message
        self.hint = hint
    }

    /// `message (hint: ...)`.
    public var description: String { "\(message) (hint: \(hint))" }
}
