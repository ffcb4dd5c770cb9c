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
    public var url: String { endpoint.url }
    private let endpoint: RedisEndpoint
    private let idle = NIOLockedValueBox<[IdleConnection]>([])
    private let timeout: timeval

    /// A client for `url`; commands fail after `timeoutMilliseconds` without an answer.
    public init(url: String, timeoutMilliseconds: Int = 500) throws {
        endpoint = try RedisEndpoint(url: url)
        self.timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
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
        try commandSync(bytes: arguments.map { Array($0.utf8) })
    }

    /// Runs one command whose arguments are raw bytes (binary-safe: each is sent with its
    /// length, a NUL included); blocking.
    func commandSync(bytes arguments: [[UInt8]]) throws -> RedisReply {
        let context = try checkout()
        let reply = arguments.withArgv { argv, lengths in
            redisCommandArgv(UnsafeMutablePointer(context), Int32(arguments.count), argv, lengths)
        }
        guard let reply else {
            let message = RedisEndpoint.errorText(of: UnsafeMutablePointer(context))
            redisFree(UnsafeMutablePointer(context))
            throw RedisError(message: "redis at \(Self.redacted(url)): \(message.isEmpty ? "connection lost" : message)")
        }
        defer { freeReplyObject(reply) }
        let decoded = Self.decode(reply.assumingMemoryBound(to: redisReply.self))
        idle.withLockedValue { $0.append(IdleConnection(context)) }
        return decoded
    }

    /// Runs one command on a thread that may block, without holding up the caller's event loop.
    public func command(_ arguments: [String]) async throws -> RedisReply {
        try await command(bytes: arguments.map { Array($0.utf8) })
    }

    /// Publishes `payload` (any bytes) on `channel`; returns how many subscribers received
    /// it on this Redis (``RedisSubscriber`` is the receiving side).
    public func publish(channel: String, payload: [UInt8]) async throws -> Int {
        let reply = try await command(bytes: [Array("PUBLISH".utf8), Array(channel.utf8), payload])
        switch reply {
        case .integer(let receivers): return Int(receivers)
        case .error(let message): throw RedisError(message: "redis at \(Self.redacted(url)): PUBLISH failed: \(message)")
        default: throw RedisError(message: "redis at \(Self.redacted(url)): PUBLISH answered \(reply), not a count")
        }
    }

    private func command(bytes arguments: [[UInt8]]) async throws -> RedisReply {
        try await withCheckedThrowingContinuation { continuation in
            RedisClient.workQueue.async {
                continuation.resume(with: Result { try self.commandSync(bytes: arguments) })
            }
        }
    }

    private static let workQueue = DispatchQueue(label: "meltybase.redis", attributes: .concurrent)

    private func checkout() throws -> OpaquePointer {
        if let context = idle.withLockedValue({ $0.popLast() }) { return context.pointer }
        return OpaquePointer(try endpoint.connect(timeout: timeout))
    }

    static func decode(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
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

extension Array where Element == [UInt8] {
    /// Calls `body` with C `argv` and length arrays valid for the duration of the call.
    /// Each argument is copied byte for byte with its exact length (binary-safe: an argument
    /// holding a NUL is passed whole, never cut or over-read).
    func withArgv<R>(_ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
        let lengths = map(\.count)
        let copies: [UnsafeMutablePointer<CChar>] = map { bytes in
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
