import Foundation
import MeltyEmbedded
import MeltyProcess

/// The Debian packages the embedded default (private Postgres and Redis) needs, and their
/// installation with apt for `meltybase serve --install-deps`.
///
/// The unpacked release carries every shared library the binary and plugins load; what it
/// cannot carry are the servers it starts: Postgres (`postgresql-15`) and `redis-server`.
public struct DependencyInstaller: Sendable {
    /// A program the configuration needs and this machine lacks, and the package that has it.
    public struct Missing: Sendable, Equatable {
        /// What is missing, as a user reads it (`Postgres server (initdb, postgres)`).
        public var what: String
        /// The Debian package that installs it.
        public var package: String
        /// Whether `serve` cannot start without it (Redis is optional: the kernel then runs
        /// with per-process rate limits).
        public var required: Bool
    }

    /// Where apt-get lives on Debian.
    public static let aptGet = "/usr/bin/apt-get"

    /// The servers and tools `config`'s embedded services need that are not installed:
    /// none with `[database] url` and `[redis] url` set.
    public static func missing(config: KernelConfig) -> [Missing] {
        var missing: [Missing] = []
        if config.usesEmbeddedPostgres {
            if PostgresBinaries.find() == nil {
                missing.append(Missing(what: "Postgres server (initdb, postgres)", package: "postgresql-15", required: true))
            }
            if config.backup.enabled {
                for (tool, package) in zip(EmbeddedTools.archiveTools, ["gzip", "coreutils", "diffutils"]) where EmbeddedTools.systemProgram(tool) == nil {
                    missing.append(Missing(what: "\(tool) (WAL archiving)", package: package, required: true))
                }
            }
            if getuid() == 0 && EmbeddedTools.systemProgram("setpriv") == nil {
                missing.append(Missing(what: "setpriv (runs Postgres unprivileged)", package: "util-linux", required: true))
            }
        }
        if config.usesEmbeddedRedis && EmbeddedTools.redisServer() == nil {
            missing.append(Missing(what: "redis-server", package: "redis-server", required: false))
        }
        return missing
    }

    /// The command that installs `packages`: as root, or with each step through `sudo`.
    public static func command(packages: [String], sudo: Bool = false) -> String {
        let prefix = sudo ? "sudo " : ""
        return "\(prefix)apt-get update && \(prefix)DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \(packages.joined(separator: " "))"
    }

    /// The message for missing dependencies when `--install-deps` was not given.
    public static func explanation(_ missing: [Missing]) -> String {
        let packages = uniquePackages(missing)
        let names = missing.map(\.what).joined(separator: ", ")
        return """
            the embedded default needs \(names), which this machine lacks. \
            Install the Debian package\(packages.count == 1 ? "" : "s") \(packages.joined(separator: " ")) as root: \
            `\(command(packages: packages))`, or run `meltybase serve --install-deps` as root; \
            or set [database] url / [redis] url (MELTYBASE_DATABASE_URL / MELTYBASE_REDIS_URL) to use servers of your own \
            (the package's docker-compose.yml starts Postgres 16 and Redis 7.2)
            """
    }

    /// Installs the packages of `missing` with apt-get (update, then install without
    /// recommends, non-interactive), writing apt's output to this process's stdout and
    /// stderr. Nothing happens when `missing` is empty. Only root may install.
    public static func install(_ missing: [Missing]) throws(DependencyInstallerError) {
        let packages = uniquePackages(missing)
        guard !packages.isEmpty else { return }
        guard getuid() == 0 else {
            throw DependencyInstallerError(
                "installing \(packages.joined(separator: " ")) needs root; run `\(command(packages: packages, sudo: true))` "
                    + "(or `sudo meltybase serve --install-deps`), then `meltybase serve` again")
        }
        guard FileManager.default.isExecutableFile(atPath: aptGet) else {
            throw DependencyInstallerError(
                "\(aptGet) not found: --install-deps knows Debian and Ubuntu only; install \(missing.map(\.what).joined(separator: ", ")) "
                    + "with this system's package manager, or set [database] url / [redis] url")
        }
        // apt, dpkg's maintainer scripts and systemctl get a minimal environment (proxies kept):
        // none of MeltyBase's own variables (a master key, database URLs) reaches them.
        var environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"]
        for (name, value) in ProcessInfo.processInfo.environment where ["http_proxy", "https_proxy", "no_proxy"].contains(name.lowercased()) {
            environment[name] = value
        }
        try run(["update"], environment: environment)
        try run(["install", "-y", "--no-install-recommends"] + packages, environment: environment)
        let left = uniquePackages(missing.filter { item in Self.missing(packages: [item.package]) })
        guard left.isEmpty else {
            throw DependencyInstallerError("apt-get finished, but \(left.joined(separator: " ")) still seem missing; run `\(command(packages: left))` and read its output")
        }
        stopDebianServices(installed: packages, environment: environment)
    }

    /// Debian starts and enables a packaged server on install (`postgresql` on 5432,
    /// `redis-server` on 6379); MeltyBase runs private ones instead, so the ones this call
    /// installed are stopped and disabled, saying how to undo it. Only under systemd; a
    /// failure here is reported, not fatal.
    private static func stopDebianServices(installed packages: [String], environment: [String: String]) {
        // The cluster Debian's postgresql-15 creates, not the umbrella postgresql.service (which
        // would also stop clusters of other versions the machine already runs).
        let units = packages.compactMap { ["postgresql-15": "postgresql@15-main.service", "redis-server": "redis-server.service"][$0] }
        let systemctl = "/usr/bin/systemctl"
        guard !units.isEmpty, FileManager.default.fileExists(atPath: "/run/systemd/system"), FileManager.default.isExecutableFile(atPath: systemctl) else { return }
        for unit in units {
            let stopped = (try? ChildSpawn.spawn(executable: systemctl, arguments: ["disable", "--now", unit], environment: environment, stdout: 1, stderr: 2))
                .flatMap { ChildSpawn.wait(for: $0) }
            let note =
                stopped == 0
                ? "stopped and disabled Debian's own \(unit) (MeltyBase runs a private server in its data directory; `systemctl enable --now \(unit)` undoes this)"
                : "could not stop Debian's own \(unit); it keeps running beside MeltyBase's private server (`systemctl disable --now \(unit)` stops it)"
            FileHandle.standardOutput.write(Data((note + "\n").utf8))
        }
    }

    /// The packages of `missing`, each once, in order.
    public static func uniquePackages(_ missing: [Missing]) -> [String] {
        var seen: Set<String> = []
        return missing.map(\.package).filter { seen.insert($0).inserted }
    }

    /// Whether `package`'s program is still absent after installing (re-checks the same way).
    private static func missing(packages: [String]) -> Bool {
        switch packages.first {
        case "postgresql-15": return PostgresBinaries.find() == nil
        case "redis-server": return EmbeddedTools.redisServer() == nil
        case "gzip": return EmbeddedTools.systemProgram("gzip") == nil
        case "coreutils": return EmbeddedTools.systemProgram("sync") == nil
        case "diffutils": return EmbeddedTools.systemProgram("cmp") == nil
        case "util-linux": return EmbeddedTools.systemProgram("setpriv") == nil
        default: return false
        }
    }

    /// Runs apt-get with `arguments` (through ``ChildSpawn``: stdout and stderr shared) and
    /// waits; throws naming the command when it fails.
    private static func run(_ arguments: [String], environment: [String: String]) throws(DependencyInstallerError) {
        let shown = "apt-get " + arguments.joined(separator: " ")
        FileHandle.standardOutput.write(Data("running: DEBIAN_FRONTEND=noninteractive \(shown)\n".utf8))
        let pid: pid_t
        do {
            pid = try ChildSpawn.spawn(executable: aptGet, arguments: arguments, environment: environment, stdout: 1, stderr: 2)
        } catch {
            throw DependencyInstallerError("\(shown): \(error)")
        }
        guard let status = ChildSpawn.wait(for: pid) else {
            throw DependencyInstallerError("\(shown): lost track of the process")
        }
        if status & 0x7f != 0 {
            throw DependencyInstallerError("\(shown) was killed by signal \(status & 0x7f)")
        }
        let code = (status >> 8) & 0xff
        guard code == 0 else {
            throw DependencyInstallerError("\(shown) failed with exit status \(code); its output is above")
        }
    }
}

/// Dependencies could not be installed: why, and what to run instead.
public struct DependencyInstallerError: Error, CustomStringConvertible {
    /// The message.
    public let description: String

    /// An error saying `message`.
    public init(_ message: String) { description = message }
}
