import Foundation

/// The shell commands Postgres runs to archive WAL into a folder and to fetch it back:
/// each file is stored gzip-compressed as `<folder>/<name>.gz`; the restore side also
/// reads uncompressed files (archives written before compression). Both put /usr/bin and
/// /bin first in PATH, whatever environment the server was started with.
public enum WALArchiveCommands {
    /// `archive_command` storing `%p` as `<directory>/%f.gz` (gzip -1). It writes a
    /// temporary file in the folder, fsyncs it, renames it and fsyncs the folder, so success
    /// means durably stored. When `%f.gz` already exists it succeeds only if its content
    /// equals `%p` (a retry after a crash), else it fails and Postgres retries and logs.
    public static func archive(directory: String) -> String {
        let folder = postgresEscaped(shellQuoted(directory))
        return "PATH=/usr/bin:/bin:$PATH; d=\(folder); f=\"$d\"/'%f.gz'; t=\"$d\"/'.%f.gz.tmp'; "
            + "if [ -e \"$f\" ]; then gzip -dc \"$f\" | cmp -s - '%p'; exit $?; fi; "
            + "gzip -1 -c '%p' > \"$t\" && sync \"$t\" && mv -f \"$t\" \"$f\" && sync \"$d\" || { rm -f \"$t\"; exit 1; }"
    }

    /// `restore_command` fetching `%f` from `directory`: `%f.gz` decompressed to `%p`, else
    /// `%f` copied; fails (quietly, ending recovery's search) when neither exists.
    public static func restore(directory: String) -> String {
        let folder = postgresEscaped(shellQuoted(directory))
        return "PATH=/usr/bin:/bin:$PATH; d=\(folder); if [ -f \"$d\"/'%f.gz' ]; then gzip -dc \"$d\"/'%f.gz' > '%p'; "
            + "elif [ -f \"$d\"/'%f' ]; then cp \"$d\"/'%f' '%p'; else exit 1; fi"
    }

    /// `text` as one shell word: in single quotes, each `'` written as `'\''`.
    public static func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// `text` with each `%` doubled, so Postgres' `%p`/`%f` substitution leaves it as written.
    public static func postgresEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "%", with: "%%")
    }
}
