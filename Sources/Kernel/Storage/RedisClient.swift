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
}

/// A small pool of blocking hiredis connections, used off the event loops.
///
/// Accepts `redis://host:port[/db]` and `unix:///path/to/redis.sock` URLs. A broken
/// connection is dropped and reopened on the next call, so a restarted Redis is picked up.
public final class RedisClient: @unchecked Sendable {
    /// The URL the client connects to.
    public let url: String
    private let target: Target
    private let idle = NIOLockedValueBox<[OpaquePointer]>([])
    private let timeout: timeval

    private enum Target { case tcp(host: String, port: Int32, database: Int), unix(path: String) }

    /// A client for `url`; commands fail after `timeoutMilliseconds` without an answer.
    public init(url: String, timeoutMilliseconds: Int = 500) throws {
        self.url = url
        self.timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        if url.hasPrefix("unix://") {
            target = .unix(path: String(url.dropFirst("unix://".count)))
        } else if let components = URLComponents(string: url), components.scheme == "redis", let host = components.host {
            let database = Int(components.path.dropFirst()) ?? 0
            target = .tcp(host: host, port: Int32(components.port ?? 6379), database: database)
        } else {
            throw RedisError(message: "redis URL \"\(url)\" must look like redis://127.0.0.1:6379 or unix:///path/redis.sock")
        }
    }

    deinit {
        for context in idle.withLockedValue({ $0 }) { redisFree(UnsafeMutablePointer(context)) }
    }

    /// Runs one command (blocking); use from a thread that may block.
    public func commandSync(_ arguments: [String]) throws -> RedisReply {
        let context = try checkout()
        let reply = arguments.withCStringArray { argv, lengths in
            redisCommandArgv(UnsafeMutablePointer(context), Int32(arguments.count), argv, lengths)
        }
        guard let reply else {
            let message = String(cString: withUnsafePointer(to: UnsafeMutablePointer<redisContext>(context).pointee.errstr) {
                UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)
            })
            redisFree(UnsafeMutablePointer(context))
            throw RedisError(message: "redis at \(url): \(message.isEmpty ? "connection lost" : message)")
        }
        defer { freeReplyObject(reply) }
        let decoded = Self.decode(reply.assumingMemoryBound(to: redisReply.self))
        idle.withLockedValue { $0.append(context) }
        return decoded
    }

    /// Runs one command on a thread that may block, without holding up the caller's event loop.
    public func command(_ arguments: [String]) async throws -> RedisReply {
        try await withCheckedThrowingContinuation { continuation in
            RedisClient.workQueue.async {
                continuation.resume(with: Result { try self.commandSync(arguments) })
            }
        }
    }

    private static let workQueue = DispatchQueue(label: "meltybase.redis", attributes: .concurrent)

    private func checkout() throws -> OpaquePointer {
        if let context = idle.withLockedValue({ $0.popLast() }) { return context }
        let context: UnsafeMutablePointer<redisContext>?
        switch target {
        case .tcp(let host, let port, _): context = redisConnectWithTimeout(host, port, timeout)
        case .unix(let path): context = redisConnectUnixWithTimeout(path, timeout)
        }
        guard let context else { throw RedisError(message: "redis at \(url): out of memory") }
        if context.pointee.err != 0 {
            let message = withUnsafePointer(to: context.pointee.errstr) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            redisFree(context)
            throw RedisError(message: "cannot connect to redis at \(url): \(message)")
        }
        redisSetTimeout(context, timeout)
        let opaque = OpaquePointer(context)
        if case .tcp(_, _, let database) = target, database != 0 {
            idle.withLockedValue { $0.append(opaque) }
            _ = try commandSync(["SELECT", String(database)])
            return try checkout()
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
    func withCStringArray<R>(_ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
        let copies = map { strdup($0) }
        defer { copies.forEach { free($0) } }
        var pointers = copies.map { UnsafePointer<CChar>($0) }
        let lengths = map { $0.utf8.count }
        return pointers.withUnsafeMutableBufferPointer { argv in
            lengths.withUnsafeBufferPointer { body(argv.baseAddress!, $0.baseAddress!) }
        }
    }
}
