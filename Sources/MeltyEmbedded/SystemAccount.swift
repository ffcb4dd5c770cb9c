import Foundation
import Logging

/// An unprivileged Unix account that runs the embedded Postgres when the kernel is root.
public struct SystemAccount: Sendable {
    /// The account's login name.
    public let name: String
    /// Its user id.
    public let uid: uid_t
    /// Its primary group id.
    public let gid: gid_t

    /// `postgres` (created by Debian's package) or a `meltybase` system account, created if needed.
    static func unprivilegedForPostgres(logger: Logger) throws -> SystemAccount {
        for name in ["postgres", "meltybase"] {
            if let account = lookup(name) { return account }
        }
        logger.notice("creating the unprivileged system account 'meltybase' to run the embedded Postgres (Postgres refuses to run as root)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/useradd")
        process.arguments = ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "meltybase"]
        try process.run()
        process.waitUntilExit()
        guard let account = lookup("meltybase") else {
            throw EmbeddedServiceError(
                "could not create the system account 'meltybase'",
                hint: "create an unprivileged account named meltybase or postgres, or run MeltyBase as a normal user")
        }
        return account
    }

    /// The account called `name`, or nil when there is none.
    public static func lookup(_ name: String) -> SystemAccount? {
        guard let entry = getpwnam(name) else { return nil }
        return SystemAccount(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// Whether the account may traverse every folder down to and including `directory`.
    public func canReach(directory: String) -> Bool {
        var path = ""
        for component in URL(fileURLWithPath: directory).standardizedFileURL.pathComponents {
            path = component == "/" ? "/" : (path == "/" ? "/" : path + "/") + component
            if component == "/" { continue }
            var info = stat()
            if stat(path, &info) != 0 { return true }  // Not created yet: created below reachable parents.
            let mode = info.st_mode
            let reachable = (info.st_uid == uid && mode & S_IXUSR != 0) || (info.st_gid == gid && mode & S_IXGRP != 0) || mode & S_IXOTH != 0
            if !reachable { return false }
        }
        return true
    }

    /// Makes the account the owner of `path` (not recursive).
    func own(_ path: String) throws {
        guard chown(path, uid, gid) == 0 else {
            throw EmbeddedServiceError(
                "cannot give \(path) to account \(name): \(String(cString: strerror(errno)))",
                hint: "run as root or as the account that owns the data directory")
        }
    }
}

/// A stable, non-cryptographic 64-bit FNV-1a hash, for folder names derived from paths.
enum StableHash {
    static func hex(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}
