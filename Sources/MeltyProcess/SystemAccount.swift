import Foundation

/// An unprivileged Unix account that runs a child when the kernel is root (the embedded
/// Postgres, the Edge plugin's Deno workers).
public struct SystemAccount: Sendable {
    /// The account's login name.
    public let name: String
    /// Its user id.
    public let uid: uid_t
    /// Its primary group id.
    public let gid: gid_t

    /// The account called `name`, created as a system account without a home or login
    /// shell (`useradd --system`) when there is none; `purpose` says why in the error.
    public static func ensure(_ name: String, purpose: String) throws(SystemAccountError) -> SystemAccount {
        if let account = lookup(name) { return account }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/useradd")
        process.arguments = ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        do {
            try process.run()
            process.waitUntilExit()
        } catch {
            throw SystemAccountError("could not run useradd to create the system account '\(name)' \(purpose): \(error)", hint: "create an unprivileged account named \(name)")
        }
        guard let account = lookup(name) else {
            throw SystemAccountError(
                "could not create the system account '\(name)' \(purpose)", hint: "create an unprivileged account named \(name), or run MeltyBase as a normal user")
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

    /// `arguments` (a program and its arguments) run as this account: through `setpriv`,
    /// which the caller (root) execs instead.
    public func command(_ arguments: [String]) -> (executable: String, arguments: [String]) {
        ("/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(gid)", "--init-groups", "--"] + arguments)
    }

    /// Makes the account the owner of `path` (not recursive).
    public func own(_ path: String) throws(SystemAccountError) {
        guard chown(path, uid, gid) == 0 else {
            throw SystemAccountError(
                "cannot give \(path) to account \(name): \(String(cString: strerror(errno)))",
                hint: "run as root or as the account that owns the data directory")
        }
    }
}

/// An account could not be found, created or given a file: what and what to do.
public struct SystemAccountError: Error, CustomStringConvertible {
    /// What went wrong.
    public let message: String
    /// What to do.
    public let hint: String

    /// An error with its hint.
    public init(_ message: String, hint: String) {
        self.message = message
        self.hint = hint
    }

    /// The message with the hint.
    public var description: String { "\(message) (hint: \(hint))" }
}
