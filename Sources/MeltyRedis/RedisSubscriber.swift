import CHiredis
import Foundation
import NIOConcurrencyHelpers

/// A Redis pub/sub subscriber: one dedicated thread holding one hiredis connection in
/// subscribe mode, for fan-out between kernels (``RedisClient/publish(channel:payload:)``
/// is the sending side).
///
/// The thread owns the connection: it alone reads (`poll` on the socket, then
/// `redisBufferRead` and `redisGetReply` from the buffer, hiredis's non-blocking pattern) and
/// writes `SUBSCRIBE`/`UNSUBSCRIBE`. ``subscribe(_:)`` and ``unsubscribe(_:)`` only change
/// the wanted channel set and wake the thread through a pipe. After a lost connection it
/// reconnects with a capped backoff (0.1 s doubling to 5 s) and subscribes every wanted
/// channel again. All signals are blocked on the thread (the kernel handles SIGTERM on its own).
///
/// `onMessage` and `onState` run on that thread, in order, and must not block: hand the
/// payload to a queue or task and return. While a handler is slow nothing is read, so
/// nothing piles up in this process; Redis buffers up to its pub/sub output limit
/// (`client-output-buffer-limit pubsub`, 32 MB by default), then drops the connection,
/// which this subscriber reports (`onState(false)`) and reopens. Messages published while
/// disconnected are lost (Redis pub/sub keeps nothing).
///
/// Call ``close()`` when done: the thread keeps the subscriber alive until then.
public final class RedisSubscriber: Sendable {
    /// Receives one message: its channel and its payload bytes (binary-safe).
    public typealias MessageHandler = @Sendable (_ channel: String, _ payload: [UInt8]) -> Void
    /// Receives `true` once subscribed after each (re)connect, `false` once the connection is lost.
    public typealias StateHandler = @Sendable (_ connected: Bool) -> Void

    private let endpoint: RedisEndpoint
    private let name: String
    private let onMessage: MessageHandler
    private let onState: StateHandler
    private let wanted = NIOLockedValueBox<Wanted>(Wanted())
    /// The wake-up pipe: the thread polls `wakeRead`; callers write a byte to `wakeWrite`.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let thread = NIOLockedValueBox<pthread_t?>(nil)

    private struct Wanted {
        var channels: Set<String> = []
        var closing = false
    }

    /// Reconnect delays in seconds for the 1st, 2nd, ... failure in a row; the last repeats.
    private static let backoff: [Double] = [0.1, 0.2, 0.5, 1, 2, 5]
    /// Connect, AUTH and write timeout.
    private static let ioTimeout = timeval(tv_sec: 2, tv_usec: 0)

    /// Starts the subscriber thread for the Redis at `url` (`name` says whose, in errors); it
    /// connects at once and subscribes to what ``subscribe(_:)`` asks for. Throws a
    /// ``RedisError`` for a malformed URL or when no thread can be started.
    public init(url: String, name: String, onMessage: @escaping MessageHandler, onState: @escaping StateHandler = { _ in }) throws {
        endpoint = try RedisEndpoint(url: url)
        self.name = name
        self.onMessage = onMessage
        self.onState = onState
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw RedisError(message: "redis subscriber \(name): cannot create its wake-up pipe (errno \(errno))") }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        try start()
    }

    /// Subscribes to `channels` (in addition to the current ones). Returns at once; the
    /// thread sends `SUBSCRIBE` soon, and again after every reconnect. Any thread.
    public func subscribe(_ channels: [String]) {
        wanted.withLockedValue { $0.channels.formUnion(channels) }
        wake()
    }

    /// Stops receiving `channels`. Returns at once; a message already on its way may still
    /// arrive. Any thread.
    public func unsubscribe(_ channels: [String]) {
        wanted.withLockedValue { $0.channels.subtract(channels) }
        wake()
    }

    /// Stops the thread, closes the connection and waits for the thread to end: at once,
    /// unless a handler is running or a connect is under way (at most its 2 s timeout).
    /// Idempotent. From a handler (the subscriber's own thread) it
    /// only asks the thread to stop.
    public func close() {
        let alreadyClosing = wanted.withLockedValue { wanted in
            defer { wanted.closing = true }
            return wanted.closing
        }
        guard !alreadyClosing else { return }
        wake()
        guard let thread = thread.withLockedValue({ $0 }) else { return }
        if pthread_equal(thread, pthread_self()) != 0 { return }
        pthread_join(thread, nil)
    }

    deinit {
        // Here, not in close(): a subscribe() racing close() must never write to a reused fd.
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)  // a full pipe already means "wake up"
    }

    /// Starts the thread with every signal blocked from its first instruction (it inherits
    /// the creating thread's mask, which is restored right after).
    private func start() throws {
        var all = sigset_t()
        var previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let retained = Unmanaged.passRetained(self).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(
            &handle, nil,
            { argument in
                let subscriber = Unmanaged<RedisSubscriber>.fromOpaque(argument!).takeRetainedValue()
                subscriber.run()
                return nil
            }, retained)
        guard status == 0 else {
            Unmanaged<RedisSubscriber>.fromOpaque(retained).release()
            throw RedisError(message: "redis subscriber \(name): cannot start its thread (error \(status))")
        }
        thread.withLockedValue { $0 = handle }
    }

    private var isClosing: Bool { wanted.withLockedValue { $0.closing } }

    /// The thread: connect, serve until the connection is lost, back off, again.
    private func run() {
        var failures = 0
        while !isClosing {
            if let context = try? connectAndSubscribe() {
                failures = 0
                onState(true)
                serve(context)
                redisFree(context.context)
                onState(false)
            } else {
                failures += 1
            }
            guard !isClosing else { break }
            let delay = Self.backoff[min(max(failures - 1, 0), Self.backoff.count - 1)]
            waitForWake(milliseconds: Int32(delay * 1000))
        }
    }

    /// A new connection subscribed to every wanted channel: the first confirmation is read
    /// blocking, so when this returns Redis already delivers those channels' messages (the
    /// other confirmations are read later with the messages).
    private func connectAndSubscribe() throws -> Connection {
        let context = try endpoint.connect(timeout: Self.ioTimeout)
        let connection = Connection(context: context)
        let channels = wanted.withLockedValue { $0.channels }
        if !channels.isEmpty {
            let arguments = [Array("SUBSCRIBE".utf8)] + channels.map { Array($0.utf8) }
            let reply = arguments.withArgv { argv, lengths in redisCommandArgv(context, Int32(arguments.count), argv, lengths) }
            guard let reply else {
                redisFree(context)
                throw RedisError(message: "SUBSCRIBE got no answer")
            }
            let refused = reply.assumingMemoryBound(to: redisReply.self).pointee.type == REDIS_REPLY_ERROR
            freeReplyObject(reply)
            if refused {
                redisFree(context)
                throw RedisError(message: "SUBSCRIBE was refused")
            }
            connection.active = channels
        }
        // From here on replies are taken from the buffer only: redisGetReply never reads the
        // socket itself (that is poll's and redisBufferRead's job on this thread).
        context.pointee.flags &= ~REDIS_BLOCK
        return connection
    }

    /// One connection and the channels it is subscribed to (thread-only state).
    private final class Connection {
        let context: UnsafeMutablePointer<redisContext>
        var active: Set<String> = []
        init(context: UnsafeMutablePointer<redisContext>) { self.context = context }
    }

    /// Reads messages and applies subscription changes until the connection fails or the
    /// subscriber closes.
    private func serve(_ connection: Connection) {
        let context = connection.context
        while true {
            guard !isClosing, send(changesOn: connection) else { return }
            var fds = [pollfd(fd: context.pointee.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { drainWake() }
            if fds[0].revents != 0 {
                // One read(2) of what arrived (16 KiB at most), then every whole reply in the buffer.
                guard redisBufferRead(context) == REDIS_OK else { return }
                while true {
                    var raw: UnsafeMutableRawPointer?
                    guard redisGetReply(context, &raw) == REDIS_OK else { return }
                    guard let raw else { break }
                    deliver(raw.assumingMemoryBound(to: redisReply.self))
                    freeReplyObject(raw)
                }
            }
        }
    }

    /// Sends SUBSCRIBE/UNSUBSCRIBE for the difference between the wanted and the active
    /// channels; false when the connection failed.
    private func send(changesOn connection: Connection) -> Bool {
        let channels = wanted.withLockedValue { $0.channels }
        let added = channels.subtracting(connection.active)
        let removed = connection.active.subtracting(channels)
        guard !added.isEmpty || !removed.isEmpty else { return true }
        for (command, names) in [("SUBSCRIBE", added), ("UNSUBSCRIBE", removed)] where !names.isEmpty {
            let arguments = [Array(command.utf8)] + names.map { Array($0.utf8) }
            let appended = arguments.withArgv { argv, lengths in redisAppendCommandArgv(connection.context, Int32(arguments.count), argv, lengths) }
            guard appended == REDIS_OK else { return false }
        }
        // The socket is blocking with a write timeout (connect's): a Redis that stops reading
        // fails the write and the connection is reopened.
        var done: Int32 = 0
        while done == 0 {
            guard redisBufferWrite(connection.context, &done) == REDIS_OK else { return false }
        }
        connection.active = channels
        return true
    }

    /// Hands a `message` reply to `onMessage`; subscribe and unsubscribe confirmations are dropped.
    private func deliver(_ reply: UnsafeMutablePointer<redisReply>) {
        let value = reply.pointee
        guard value.type == REDIS_REPLY_ARRAY, value.elements == 3, let kind = value.element[0], let channel = value.element[1], let payload = value.element[2],
            Self.bytes(of: kind) == Array("message".utf8)
        else { return }
        onMessage(String(decoding: Self.bytes(of: channel), as: UTF8.self), Self.bytes(of: payload))
    }

    private static func bytes(of reply: UnsafeMutablePointer<redisReply>) -> [UInt8] {
        guard let pointer = reply.pointee.str else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: Int(reply.pointee.len)))
    }

    /// Waits until woken (a subscription change or close) or `milliseconds` passed.
    private func waitForWake(milliseconds: Int32) {
        var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        if poll(&fds, 1, milliseconds) > 0 { drainWake() }
    }

    private func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &buffer, buffer.count) > 0 {}
    }
}
