import CHiredis
import Foundation

/// Where a Redis URL points and how to open a ready connection there: the one URL parser
/// and connection set-up (`AUTH`, `SELECT`) of ``RedisClient`` and ``RedisSubscriber``.
///
/// Accepts `redis://[[user]:password@]host:port[/db]` and `unix:///path/to/redis.sock`;
/// `rediss://` (TLS) is refused with a clear error (Debian 12's hiredis 0.14 has no TLS).
struct RedisEndpoint: Sendable {
    /// The URL as given (may hold a password: show it through ``RedisClient/redacted(_:)``).
    let url: String
    private let target: Target
    /// `AUTH` arguments from the URL (`[password]` or `[user, password]`); never logged.
    private let authentication: [String]

    private enum Target {
        case tcp(host: String, port: Int32, database: Int)
        case unix(path: String)
    }

    /// The endpoint of `url`; throws a ``RedisError`` naming the accepted forms.
    init(url: String) throws {
        _ = Self.ignoreBrokenPipes
        self.url = url
        var authentication: [String] = []
        if url.hasPrefix("unix://") {
            target = .unix(path: String(url.dropFirst("unix://".count)))
        } else if url.hasPrefix("rediss://") {
            throw RedisError(
                message:
                    "redis URL \(RedisClient.redacted(url)): TLS (rediss://) is not supported by the hiredis this kernel is built with (0.14); connect through a local TLS tunnel (stunnel) as redis://127.0.0.1:<port>, or over a unix socket"
            )
        } else if let components = URLComponents(string: url), components.scheme == "redis", let host = components.host,
            (components.port ?? 6379) > 0, (components.port ?? 6379) <= 65535
        {
            guard let database = components.path.isEmpty || components.path == "/" ? 0 : Int(components.path.dropFirst()), database >= 0 else {
                throw RedisError(message: "redis URL \(RedisClient.redacted(url)): the path must be a database number (redis://host:6379/0)")
            }
            target = .tcp(host: host, port: Int32(components.port ?? 6379), database: database)
            if let password = components.password.flatMap({ $0.removingPercentEncoding ?? $0 }), !password.isEmpty {
                let user = components.user.flatMap { $0.removingPercentEncoding ?? $0 } ?? ""
                authentication = user.isEmpty ? [password] : [user, password]
            }
        } else {
            throw RedisError(message: "redis URL \"\(RedisClient.redacted(url))\" must look like redis://127.0.0.1:6379, redis://:password@host:6379/0 or unix:///path/redis.sock")
        }
        self.authentication = authentication
    }

    /// A new blocking connection, authenticated and on the URL's database, whose reads and
    /// writes fail after `timeout`. The caller owns it (`redisFree`). Blocks.
    func connect(timeout: timeval) throws -> UnsafeMutablePointer<redisContext> {
        let context: UnsafeMutablePointer<redisContext>?
        switch target {
        case .tcp(let host, let port, _): context = redisConnectWithTimeout(host, port, timeout)
        case .unix(let path): context = redisConnectUnixWithTimeout(path, timeout)
        }
        guard let context else { throw RedisError(message: "redis at \(RedisClient.redacted(url)): out of memory") }
        if context.pointee.err != 0 {
            let message = Self.errorText(of: context)
            redisFree(context)
            throw RedisError(message: "cannot connect to redis at \(RedisClient.redacted(url)): \(message)")
        }
        redisSetTimeout(context, timeout)
        var setup: [[String]] = []
        if !authentication.isEmpty { setup.append(["AUTH"] + authentication) }
        if case .tcp(_, _, let database) = target, database != 0 { setup.append(["SELECT", String(database)]) }
        for arguments in setup {
            let bytes = arguments.map { Array($0.utf8) }
            let raw = bytes.withArgv { argv, lengths in redisCommandArgv(context, Int32(bytes.count), argv, lengths) }
            guard let raw else {
                let message = Self.errorText(of: context)
                redisFree(context)
                throw RedisError(message: "redis at \(RedisClient.redacted(url)): \(message.isEmpty ? "connection lost" : message)")
            }
            let reply = RedisClient.decode(raw.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(raw)
            if case .error(let message) = reply {
                redisFree(context)
                let step = arguments[0] == "AUTH" ? "AUTH with the password in the URL failed" : "SELECT \(arguments[1]) failed"
                throw RedisError(message: "redis at \(RedisClient.redacted(url)): \(step): \(message)")
            }
        }
        return context
    }

    /// The context's `errstr`, read in place (a copy of the struct would leave a dangling
    /// pointer: the error text once came out as garbage bytes that way).
    static func errorText(of context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: &context.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// hiredis writes with plain `write(2)`: a command sent on a connection whose server died
    /// would raise SIGPIPE and end the whole process (every portal). Ignored once per process;
    /// the write then fails with EPIPE and the command reports the lost connection.
    private static let ignoreBrokenPipes: Void = { signal(SIGPIPE, SIG_IGN) }()
}
