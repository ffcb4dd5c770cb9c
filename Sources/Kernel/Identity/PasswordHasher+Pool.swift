import MeltyPasswords
import NIOPosix

extension PasswordHasher {
    /// Runs `hash` on `pool` (it takes tens of milliseconds and 19 MiB): the kernel's
    /// bounded blocking pool, so a burst of sign-ups cannot start a thread each.
    public func hash(_ password: String, on pool: NIOThreadPool) async throws -> String {
        try await pool.runIfActive { try self.hash(password) }
    }

    /// Runs `verify` on `pool`; false when the pool has stopped.
    public static func verify(_ password: String, against encoded: String, on pool: NIOThreadPool) async -> Bool {
        (try? await pool.runIfActive { verify(password, against: encoded) }) ?? false
    }
}
