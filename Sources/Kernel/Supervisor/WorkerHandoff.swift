import Foundation

/// What the supervisor hands its kernel worker, and how the worker reads it.
///
/// Descriptors, by number: 3 is one end of the supervisor's lifeline (a socket pair; the
/// supervisor holds the only other end, so the read ends at EOF exactly when the
/// supervisor is gone, also after `kill -9`), and 4, 5, ... are the listening sockets in
/// `[[listeners]]` order. The embedded services' addresses come in the environment
/// (`MELTYBASE_DATABASE_URL`, `MELTYBASE_REDIS_URL`): a unix-socket conninfo and URL
/// without secrets, which `ps` must not show on a command line anyway.
public enum WorkerHandoff {
    /// The lifeline pipe's read end in the worker.
    public static let lifelineDescriptor: CInt = 3

    /// The inherited listening sockets for `listenerCount` listeners.
    public static func listenerDescriptors(count listenerCount: Int) -> [CInt] {
        (0..<listenerCount).map { 4 + CInt($0) }
    }

    /// The exit status of a worker that could not start (bad TLS files, a required plugin
    /// that does not load, ...): the supervisor stops instead of restarting it for ever.
    public static let startFailureExitCode: CInt = 78

    /// Checks that the descriptors are there, then ends this process as soon as the
    /// supervisor is gone: a worker must not serve on without the supervisor that owns
    /// its database. Watches on a dedicated thread.
    public static func watchLifeline() throws {
        var info = stat()
        guard fstat(lifelineDescriptor, &info) == 0, [S_IFIFO, S_IFSOCK].contains(info.st_mode & S_IFMT) else {
            throw SupervisorError.missingServiceAddress("its lifeline pipe (descriptor 3)")
        }
        let thread = Thread {
            var byte: UInt8 = 0
            while true {
                let count = read(lifelineDescriptor, &byte, 1)
                if count < 0 && errno == EINTR { continue }
                if count > 0 { continue }
                // EOF (or an error): the supervisor is gone.
                let message = "meltybase worker: the supervisor is gone; exiting\n"
                _ = message.withCString { write(STDERR_FILENO, $0, strlen($0)) }
                _exit(70)
            }
        }
        thread.name = "meltybase-lifeline"
        thread.start()
    }
}
