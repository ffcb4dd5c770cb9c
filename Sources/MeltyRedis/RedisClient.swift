import CHiredis
import Foundation
import NIOConcurrencyHelpers

/// A reply from Redis, decoded from hiredis' `redisReply`.
public indirect enum RedisReply: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case array([RedisReply])
    case null
    case status(String)
    case error(String)

    /// The integer value, if this is an integer reply.
    public var integer: Int64? { if case .integer(let value) = self { value } else { nil } }
}

/// Why a Redis command could not run.
public struct RedisError: Error, CustomStringConvertible {
    /// What went wrong.
    public var message: String
    /// The message.
    public var description: String { message }

    /// An error saying `message`.
    public init(message: String) { self.message = message }
}

/// A small pool of blocking hiredis connections, used off the event loops.
///
/// Accepts `redis://[[user]:password@]host:port[/db]` and `unix:///path/to/redis.sock`
/// URLs; with a password every new connection sends `AUTH` before its first command.
/// `rediss://` (TLS) is refused with a clear error: Debian 12's hiredis (0.14) has no TLS;
/// reach a TLS-only Redis through a local TLS tunnel (stunnel) or a unix socket. A broken
/// connection is dropped and reopened on the next call, so a restarted Redis is picked up.
public final class RedisClient: Sendable {
    /// The URL the client connects to.
    public let url: String
    private let target: Target
    private let idle = NIOLockedValueBox<[IdleConnection]>([])
    private let timeout: timeval
    /// `AUTH` arguments from the URL (`[password]` or `[user, password]`); never logged.
    private let authentication: [String]

    private enum Target {
        case tcp(host: String, port: Int32, database: Int)
        case unix(path: String)
    }

    /// A client for `url`; commands fail after `timeoutMilliseconds` without an answer.
    public init(url: String, timeoutMilliseconds: Int = 500) throws {
        _ = Self.ignoreBrokenPipes
        self.url = url
        self.timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
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

    deinit {
        for context in idle.withLockedValue({ $0 }) { redisFree(UnsafeMutablePointer(context.pointer)) }
    }

    /// `url` with any password replaced by `***`, for messages and logs.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? "redis://***"
    }

    /// Runs one command (blocking); use from a thread that may block.
    public func commandSync(_ arguments: [String]) throws -> RedisReply {
        try run(arguments, on: try checkout())
    }

    /// Runs `arguments` on `context`, which goes back to the idle list after an answer (unless
    /// `keep`: the caller still sets it up) and is freed after a failure.
    private func run(_ arguments: [String], on context: OpaquePointer, keep: Bool = false) throws -> RedisReply {
        let reply = arguments.withCStringArray { argv, lengths in
            redisCommandArgv(UnsafeMutablePointer(context), Int32(arguments.count), argv, lengths)
        }
        guard let reply else {
            let message = Self.errorText(of: UnsafeMutablePointer(context))
            redisFree(UnsafeMutablePointer(context))
            throw RedisError(message: "redis at \(Self.redacted(url)): \(message.isEmpty ? "connection lost" : message)")
        }
        defer { freeReplyObject(reply) }
        let decoded = Self.decode(reply.assumingMemoryBound(to: redisReply.self))
        if !keep { idle.withLockedValue { $0.append(IdleConnection(context)) } }
        return decoded
    }

    /// The context's `errstr`, read in place (a copy of the struct would leave a dangling
    /// pointer: the error text once came out as garbage bytes that way).
    private static func errorText(of context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: &context.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Runs one command on a thread that may block, without holding up the caller's event loop.
    public func command(_ arguments: [String]) async throws -> RedisReply {
        try await withCheckedThrowingContinuation { continuation in
            RedisClient.workQueue.async {
                continuation.resume(with: Result { try self.commandSync(arguments) })
            }
        }
    }

    /// hiredis writes with plain `write(2)`: a command sent on a connection whose server died
    /// would raise SIGPIPE and end the whole process (every portal). Ignored once per process;
    /// the write then fails with EPIPE and the command reports the lost connection.
    private static let ignoreBrokenPipes: Void = { signal(SIGPIPE, SIG_IGN) }()

    private static let workQueue = DispatchQueue(label: "meltybase.redis", attributes: .concurrent)

    private func checkout() throws -> OpaquePointer {
        if let context = idle.withLockedValue({ $0.popLast() }) { return context.pointer }
        let context: UnsafeMutablePointer<redisContext>?
        switch target {
        case .tcp(let host, let port, _): context = redisConnectWithTimeout(host, port, timeout)
        case .unix(let path): context = redisConnectUnixWithTimeout(path, timeout)
        }
        guard let context else { throw RedisError(message: "redis at \(Self.redacted(url)): out of memory") }
        if context.pointee.err != 0 {
            let message = Self.errorText(of: context)
            redisFree(context)
            throw RedisError(message: "cannot connect to redis at \(Self.redacted(url)): \(message)")
        }
        redisSetTimeout(context, timeout)
        let opaque = OpaquePointer(context)
        var setup: [[String]] = []
        if !authentication.isEmpty { setup.append(["AUTH"] + authentication) }
        if case .tcp(_, _, let database) = target, database != 0 { setup.append(["SELECT", String(database)]) }
        for arguments in setup {
            // Kept off the idle list until set up: no other caller may take it half-authenticated.
            let reply = try run(arguments, on: opaque, keep: true)
            if case .error(let message) = reply {
                redisFree(context)
                let step = arguments[0] == "AUTH" ? "AUTH with the password in the URL failed" : "SELECT \(arguments[1]) failed"
                throw RedisError(message: "redis at \(Self.redacted(url)): \(step): \(message)")
            }
        }
        return opaque
    }

    private static func decode(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        func text() -> String {
            guard let pointer = value.str else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: pointer, count: Int(value.len)), as: UTF8.self)
        }
        switch value.type {
        case REDIS_REPLY_STRING: return .string(text())
        case REDIS_REPLY_INTEGER: return .integer(value.integer)
        case REDIS_REPLY_STATUS: return .status(text())
        case REDIS_REPLY_ERROR: return .error(text())
        case REDIS_REPLY_ARRAY:
            return .array((0..<Int(value.elements)).map { decode(value.element[$0]!) })
        default: return .null
        }
    }
}

extension Array where Element == String {
    /// Calls `body` with C `argv` and length arrays valid for the duration of the call.
    /// Each argument is copied byte for byte with its exact length (binary-safe: an argument
    /// holding a NUL is passed whole, never cut or over-read).
    func withCStringArray<R>(_ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
        let lengths = map { $0.utf8.count }
        let copies: [UnsafeMutablePointer<CChar>] = map { argument in
            let bytes = [UInt8](argument.utf8)
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            bytes.withUnsafeBufferPointer { buffer in
                if let base = buffer.baseAddress { UnsafeMutableRawPointer(copy).copyMemory(from: base, byteCount: bytes.count) }
            }
            copy[bytes.count] = 0
            return copy
        }
        defer { copies.forEach { $0.deallocate() } }
        var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer<CChar>($0) }
        return pointers.withUnsafeMutableBufferPointer { argv in
            lengths.withUnsafeBufferPointer { body(argv.baseAddress!, $0.baseAddress!) }
        }
    }
}

/// An idle hiredis connection, owned by the pool's list until one caller takes it: used by
/// one thread at a time, handed over under the pool's lock.
private struct IdleConnection: @unchecked Sendable {  // Sendable: handed over under a lock, one user at a time.
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}
