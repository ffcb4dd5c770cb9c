import Foundation
import MeltyEmbedded
import MeltyProcess

/// Runs the Postgres tools (`pg_basebackup`, `pg_verifybackup`, `pg_archivecleanup`, `cp`,
/// `psql`) as the account Postgres runs as, each on a thread of its own that waits for the
/// child, never on the caller's executor or an event loop.
public struct ToolRunner: Sendable {
    /// The Postgres server binaries' folder.
    public let binDirectory: String
    /// The account the tools run as when the caller is root (through `setpriv`); nil: the caller.
    public let account: SystemAccount?

    /// What a finished tool left.
    public struct Outcome: Sendable {
        /// Its exit status (128 + signal when killed).
        public var status: Int32
        /// Its standard output and error, interleaved.
        public var output: String
    }

    /// A runner for the embedded cluster's binaries and account.
    public init(postgres: EmbeddedPostgres) {
        binDirectory = postgres.binDirectory
        account = postgres.account
    }

    /// A runner for `binDirectory` as `account`.
    public init(binDirectory: String, account: SystemAccount?) {
        self.binDirectory = binDirectory
        self.account = account
    }

    /// `arguments` run as the Postgres account (through setpriv when we are root).
    public func wrapped(_ arguments: [String]) -> (String, [String]) {
        guard let account else { return (arguments[0], Array(arguments.dropFirst())) }
        return account.command(arguments)
    }

    /// The path of Postgres tool `name` (`pg_basebackup`).
    public func tool(_ name: String) -> String { binDirectory + "/" + name }

    /// Runs `arguments` to completion off the caller's thread; its status and output.
    public func run(_ arguments: [String], asPostgres: Bool = true) async throws -> Outcome {
        let (executable, fullArguments) = asPostgres ? wrapped(arguments) : (arguments[0], Array(arguments.dropFirst()))
        return try await Self.onOwnThread { try Self.runBlocking(executable, fullArguments) }
    }

    /// Runs `arguments` to completion on the calling thread (which must be one that may block).
    public func runHere(_ arguments: [String], asPostgres: Bool = true) throws -> Outcome {
        let (executable, fullArguments) = asPostgres ? wrapped(arguments) : (arguments[0], Array(arguments.dropFirst()))
        return try Self.runBlocking(executable, fullArguments)
    }

    /// Runs `arguments` and throws ``BackupError`` with the tool's output when it fails.
    @discardableResult
    public func check(_ arguments: [String], asPostgres: Bool = true, hint: String) async throws -> String {
        let outcome = try await run(arguments, asPostgres: asPostgres)
        guard outcome.status == 0 else {
            let name = ((arguments.first ?? "") as NSString).lastPathComponent
            throw BackupError("\(name) failed (exit \(outcome.status)): \(outcome.output.trimmingCharacters(in: .whitespacesAndNewlines))", hint: hint)
        }
        return outcome.output
    }

    /// Runs blocking `work` on a new thread and resumes with its result.
    public static func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try work() }) }.start()
        }
    }

    private static func runBlocking(_ executable: String, _ arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        process.standardInput = FileHandle.nullDevice
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            throw BackupError("cannot run \(executable): \(error)", hint: "check that the Postgres client tools are installed (postgresql-15)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Outcome(status: status, output: String(decoding: data, as: UTF8.self))
    }
}
