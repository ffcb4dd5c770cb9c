import Foundation
import MeltyPluginSDK
import MeltyPostgres
import PortalDatabaseCore

/// The Database plugin's commands (ABI 1.5): `meltybase database migrate` (formerly
/// `meltybase migrate`, still an alias) and `meltybase database conninfo` (what
/// `meltybase portal psql` connects with). They run in the CLI process on the system
/// database the host names (`postgres_conninfo`).
enum DatabaseCommands {
    static var all: [PluginCommandDefinition] { [migrate, conninfo] }

    static let migrate = PluginCommandDefinition(
        name: "migrate",
        summary: "Apply a folder of SQL migrations to a portal's database, each file once.",
        help: """
            USAGE: meltybase database migrate --portal <portal> <directory> [--dry-run | --status] [--config <path>]

            Apply a folder of SQL migrations to a portal's database, each file once.

            Files ending in .sql are applied in name order (use prefixes like 001_, 002_), each in its own
            transaction, as the portal's owner role, and recorded in meltybase_internal.migrations with a
            checksum. Re-running applies only new files; a file edited after it was applied is reported as
            "changed" and not re-run. The portal needs the database plugin enabled (its database exists once
            a kernel served it).

            OPTIONS:
              --portal <portal>       Portal whose database to migrate.
              <directory>             Folder of .sql files.
              --dry-run               Show which files would be applied, apply nothing.
              --status                List every file as applied, pending or changed.
            """,
        options: [.value("portal"), .flag("dry-run"), .flag("status")]
    ) { arguments, context in
        let portal = try arguments.required("portal")
        guard arguments.positional.count == 1, let directory = arguments.positional.first else {
            throw CommandUsageError("expected one folder of .sql files, found \(arguments.positional.count) argument(s)")
        }
        let folder = URL(fileURLWithPath: directory).standardizedFileURL.path
        let loop = PostgresEventLoop(name: "meltybase-database-cli")
        defer { loop.shutdown() }
        let conninfo = PortalDatabaseNames.conninfo(try context.host.postgresConninfo(), portal: portal, user: PortalDatabaseNames.owner(portal))
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(conninfo, on: loop)
        } catch let error as PostgresError {
            throw PluginError.unavailable(
                "cannot reach the database of portal \"\(portal)\" (\(PortalDatabaseNames.database(portal))): \(error.message). Is the database plugin enabled for it (`meltybase portal enable \(portal) database`) and has a kernel started since?"
            )
        }
        defer { connection.close() }
        let runner = MigrationRunner(connection: connection, directory: folder)
        let lines: [String]
        do {
            if arguments.flag("status") {
                let all = try await runner.status()
                lines = all.isEmpty ? ["no .sql files in \(folder)"] : all.map { "\($0.state.padding(toLength: 8, withPad: " ", startingAt: 0)) \($0.name)" }
            } else {
                let dryRun = arguments.flag("dry-run")
                let applied = try await runner.apply(dryRun: dryRun)
                lines = applied.isEmpty ? ["nothing to apply: every migration in \(folder) is applied"] : applied.map { (dryRun ? "would apply " : "applied ") + $0.name }
            }
        } catch let failure as MigrationRunner.Failure {
            throw PluginError.invalid(failure.description)
        } catch let error as PostgresError {
            throw PluginError.unavailable("portal \"\(portal)\": \(error.message)")
        }
        lines.forEach { context.output.print($0) }
        return 0
    }

    static let conninfo = PluginCommandDefinition(
        name: "conninfo",
        summary: "Print the libpq connection string of a portal's database (used by `meltybase portal psql`).",
        help: """
            USAGE: meltybase database conninfo --portal <portal> [--role owner|anon|authenticated|service_role]

            Prints the connection string of the portal's database: as its owner role (the default), or as the
            API's authenticator for an API role (take the role with PGOPTIONS="-c role=<role>", as
            `meltybase portal psql --role` does).
            """,
        options: [.value("portal"), .value("role")]
    ) { arguments, context in
        let portal = try arguments.required("portal")
        let role = arguments.value("role") ?? "owner"
        guard ["owner", "anon", "authenticated", "service_role"].contains(role) else {
            throw CommandUsageError("--role must be owner, anon, authenticated or service_role (got \"\(role)\")")
        }
        let user = role == "owner" ? PortalDatabaseNames.owner(portal) : "authenticator"
        context.output.print(PortalDatabaseNames.conninfo(try context.host.postgresConninfo(), portal: portal, user: user))
        return 0
    }
}
