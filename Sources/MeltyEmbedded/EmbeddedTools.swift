import Foundation

/// Where the embedded mode finds the programs it runs besides Postgres (``PostgresBinaries``):
/// one rule for starting them, for `meltybase doctor` and for `serve --install-deps`.
public enum EmbeddedTools {
    /// `redis-server` (Debian's, or a local build in /usr/local/bin), nil when absent.
    public static func redisServer() -> String? {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first(where: FileManager.default.isExecutableFile(atPath:))
    }

    /// The programs `archive_command` runs (`gzip`, `sync`, `cmp`).
    public static let archiveTools = ["gzip", "sync", "cmp"]

    /// A system program (in /usr/bin or /bin: `archive_command` names no path), nil when absent.
    public static func systemProgram(_ name: String) -> String? {
        ["/usr/bin/", "/bin/"].map { $0 + name }.first(where: FileManager.default.isExecutableFile(atPath:))
    }
}
