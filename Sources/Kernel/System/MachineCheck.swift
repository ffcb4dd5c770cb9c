import Foundation
import MeltyEmbedded
import MeltyProcess

/// One finding of `meltybase doctor`.
public struct MachineCheck: Sendable {
    /// What was checked.
    public var name: String
    /// Whether it is fine.
    public var ok: Bool
    /// Whether MeltyBase cannot run without it.
    public var required: Bool
    /// What was found.
    public var detail: String
    /// How to fix it.
    public var fix: String?

    /// Every check, in the order a user should fix them.
    public static func all(configPath: String) -> [MachineCheck] {
        var checks: [MachineCheck] = []
        let libraries: [(String, String, String)] = [
            ("libpq", "libpq.so.5", "libpq-dev"), ("hiredis", "libhiredis.so", "libhiredis-dev"),
            ("libsodium", "libsodium.so", "libsodium-dev"), ("libargon2", "libargon2.so", "libargon2-dev"),
            ("OpenSSL libcrypto", "libcrypto.so.3", "libssl-dev"),
        ]
        for (name, soname, package) in libraries {
            let found = ["", ".0", ".1", ".23"].contains { suffix in
                guard let handle = dlopen(soname + suffix, RTLD_LAZY | RTLD_LOCAL) else { return false }
                _ = handle  // Leave it mapped; doctor exits soon.
                return true
            }
            checks.append(
                MachineCheck(
                    name: "C library \(name)", ok: found, required: true,
                    detail: found ? "found (\(soname))" : "not found", fix: "apt-get install \(package)"))
        }
        let postgres = PostgresBinaries.find()
        checks.append(
            MachineCheck(
                name: "Postgres server", ok: postgres != nil, required: false,
                detail: postgres.map { "initdb and postgres in \($0)" } ?? "initdb/postgres not found (needed for the embedded default)",
                fix: "apt-get install postgresql-15, or set [database] url / MELTYBASE_DATABASE_URL"))
        let redis = EmbeddedTools.redisServer()
        checks.append(
            MachineCheck(
                name: "Redis server", ok: redis != nil, required: false,
                detail: redis.map { "redis-server at \($0)" } ?? "redis-server not found (needed for the embedded default)",
                fix: "apt-get install redis-server, or set [redis] url / MELTYBASE_REDIS_URL"))
        let deno = ChildSpawn.executable(named: FileManager.default.currentDirectoryPath + "/.venv/bin/deno") ?? ChildSpawn.executable(named: "deno")
        checks.append(
            MachineCheck(
                name: "Deno", ok: deno != nil, required: false,
                detail: deno.map { "\($0)" } ?? "deno not found (needed by the Edge plugin)",
                fix: "python3 -m venv .venv && .venv/bin/pip install deno (scripts/setup.sh does)"))
        if getuid() == 0 {
            let account = SystemAccount.lookup("postgres") ?? SystemAccount.lookup("meltybase")
            checks.append(
                MachineCheck(
                    name: "unprivileged account for Postgres", ok: true, required: false,
                    detail: account.map { "running as root: the embedded Postgres runs as \($0.name)" }
                        ?? "running as root: a 'meltybase' system account will be created on first start",
                    fix: nil))
        }
        do {
            let config = try ConfigLoader().load(path: configPath)
            checks.append(
                MachineCheck(
                    name: "config", ok: true, required: true,
                    detail: "\(config.sourcePath) is valid (\(config.plugins.count) plugins, \(config.portals.count) portals)", fix: nil))
            for plugin in config.plugins {
                let exists = FileManager.default.fileExists(atPath: plugin.path)
                checks.append(
                    MachineCheck(
                        name: "plugin \(plugin.name)", ok: exists, required: plugin.required,
                        detail: exists ? plugin.path : "\(plugin.path) does not exist",
                        fix: "build it (scripts/run builds the bundled plugins) or fix [plugins.\(plugin.name)] path"))
            }
        } catch {
            checks.append(MachineCheck(name: "config", ok: false, required: true, detail: "\(error)", fix: "fix the file, or pass --config"))
        }
        return checks
    }
}
