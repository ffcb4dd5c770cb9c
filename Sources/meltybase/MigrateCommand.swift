import ArgumentParser
import Foundation
import Kernel
import Logging
import MeltyPostgres
import PortalDatabaseCore

/// `meltybase migrate --portal P DIR [--dry-run | --status]`
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply a folder of SQL migrations to a portal's database, each file once.",
        discussion: """
            Files ending in .sql are applied in name order (use prefixes like 001_, 002_), each in its own
            transaction, as the portal's owner role, and recorded in meltybase_internal.migrations with a
            checksum. Re-running applies only new files; a file edited after it was applied is reported as
            "changed" and not re-run. The portal needs the database plugin enabled (its database exists once
            a kernel served it).
            """)

    @OptionGroup var options: ConfigOptions
    @Option(name: .long, help: "Portal whose database to migrate.") var portal: String
    @Argument(help: "Folder of .sql files.") var directory: String
    @Flag(name: .long, help: "Show which files would be applied, apply nothing.") var dryRun = false
    @Flag(name: .long, help: "List every file as applied, pending or changed.") var status = false

    func run() async throws {
        let config = try options.load()
        var logger = Logger(label: "meltybase")
        logger.logLevel = .warning
        let folder = URL(fileURLWithPath: directory).standardizedFileURL.path
        let portal = self.portal
        let dryRun = self.dryRun
        let status = self.status
        let lines: [String] = try await Kernel(config: config, logger: logger).withSystemDatabase { database in
            let conninfo = PortalDatabaseNames.conninfo(database.conninfo, portal: portal, user: PortalDatabaseNames.owner(portal))
            let connection: PostgresConnection
            do {
                connection = try await PostgresConnection.connect(conninfo, on: database.loop)
            } catch let error as PostgresError {
                throw CommandError("cannot reach the database of portal \"\(portal)\" (\(PortalDatabaseNames.database(portal))): \(error.message). Is the database plugin enabled for it (`meltybase portal enable \(portal) database`) and has a kernel started since?")
            }
            defer { connection.close() }
            let runner = MigrationRunner(connection: connection, directory: folder)
            do {
                if status {
                    let all = try await runner.status()
                    return all.isEmpty ? ["no .sql files in \(folder)"] : all.map { "\($0.state.padding(toLength: 8, withPad: " ", startingAt: 0)) \($0.name)" }
                }
                let applied = try await runner.apply(dryRun: dryRun)
                if applied.isEmpty { return ["nothing to apply: every migration in \(folder) is applied"] }
                return applied.map { (dryRun ? "would apply " : "applied ") + $0.name }
            } catch let failure as MigrationRunner.Failure {
                throw CommandError(failure.description)
            } catch let error as PostgresError {
                throw CommandError("portal \"\(portal)\": \(error.message)")
            }
        }
        lines.forEach { print($0) }
    }
}
