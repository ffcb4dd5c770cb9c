import CLibPQ
import Foundation
import Synchronization

/// One thread that waits, with epoll, for libpq's sockets to become readable or writable
/// and resumes the task that asked. No thread is parked per query: a connection sends
/// without blocking (libpq's non-blocking mode) and suspends its task until the socket is
/// ready; the loop's only work is to resume it.
///
/// Create one per owner (the kernel, a plugin) and pass it down; ``shutdown()`` stops it.
public final class PostgresEventLoop: Sendable {
    /// What a waiter waits for.
    public struct Readiness: OptionSet, Sendable {
        /// The epoll event bits.
        public let rawValue: UInt32
        /// Readiness from epoll event bits.
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Data (or end of stream, or an error) can be read.
        public static let readable = Readiness(rawValue: 1)
        /// The send buffer has room.
        public static let writable = Readiness(rawValue: 2)
    }

    /// Who waits for a socket: a suspended task, or a handler called on the loop's thread.
    private enum Waiter {
        case task(CheckedContinuation<Readiness, any Error>)
        case handler(@Sendable (Result<Readiness, any Error>) -> Void)

        func resume(_ result: Result<Readiness, any Error>) {
            switch self {
            case .task(let continuation): continuation.resume(with: result)
            case .handler(let handler): handler(result)
            }
        }
    }

    private struct State {
        /// One waiter per socket at a time (a connection is used by one task at a time).
        var waiters: [Int32: Waiter] = [:]
        /// Sockets added to the epoll set (later waits re-arm them with EPOLL_CTL_MOD).
        var registered: Set<Int32> = []
        var stopped = false
    }

    /// Where `PQcancel` runs: it opens its own connection to the server and blocks until
    /// the server took the request, so it gets one serial thread of its own.
    private let cancelQueue = DispatchQueue(label: "meltybase-postgres-cancel")
    private let epollDescriptor: Int32
    private let wakeDescriptor: Int32
    private let state = Mutex(State())

    /// Starts the loop's thread (named `name`).
    public init(name: String = "meltybase-postgres") {
        epollDescriptor = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeDescriptor = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        precondition(epollDescriptor >= 0 && wakeDescriptor >= 0, "epoll_create1/eventfd failed: errno \(errno)")
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeDescriptor
        _ = epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, wakeDescriptor, &event)
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Suspends the calling task until `socket` is ready for one of `readiness`; returns
    /// which. Throws when the loop is shut down or the socket cannot be watched. With
    /// `cancellable`, cancelling the task ends the wait with `CancellationError` (the
    /// socket is unwatched: use it for idle waits such as LISTEN, never mid-command).
    public func wait(for socket: Int32, _ readiness: Readiness, cancellable: Bool = false) async throws -> Readiness {
        guard cancellable else { return try await register(socket, readiness, cancellable: false) }
        return try await withTaskCancellationHandler {
            try await register(socket, readiness, cancellable: true)
        } onCancel: {
            forget(socket, error: CancellationError())
        }
    }

    /// Calls `handler` once, on the loop's thread, when `socket` is ready for one of
    /// `readiness` (or with the error that ends the watch: the loop shut down, ``forget(_:)``).
    /// One shot: call again from the handler to keep watching. For a non-blocking pipe read
    /// without a task per wake-up; the handler must not block (it holds up every socket of
    /// the loop).
    public func watch(_ socket: Int32, _ readiness: Readiness, handler: @escaping @Sendable (Result<Readiness, any Error>) -> Void) {
        arm(socket, readiness, .handler(handler), cancellable: false)
    }

    private func register(_ socket: Int32, _ readiness: Readiness, cancellable: Bool) async throws -> Readiness {
        try await withCheckedThrowingContinuation { continuation in
            arm(socket, readiness, .task(continuation), cancellable: cancellable)
        }
    }

    /// Stores `waiter` for `socket` and arms the socket; an arming that fails resumes it with the error.
    private func arm(_ socket: Int32, _ readiness: Readiness, _ waiter: Waiter, cancellable: Bool) {
        // The waiter is stored under the lock; the socket is armed after it (epoll_ctl is
        // a system call: the loop thread must not wait for it), so an event always finds it.
        let wasRegistered: Bool? = state.withLock { state in
            guard !state.stopped, state.waiters[socket] == nil else { return nil }
            state.waiters[socket] = waiter
            return !state.registered.insert(socket).inserted
        }
        guard let wasRegistered else {
            let stopped = state.withLock { $0.stopped }
            waiter.resume(
                .failure(
                    PostgresError.connectionClosed(
                        stopped
                            ? "the Postgres event loop is shut down"
                            : "the connection is already waiting (a connection serves one task at a time)")))
            return
        }
        var event = epoll_event()
        event.events =
            EPOLLONESHOT.rawValue
            | (readiness.contains(.readable) ? EPOLLIN.rawValue | EPOLLRDHUP.rawValue : 0)
            | (readiness.contains(.writable) ? EPOLLOUT.rawValue : 0)
        event.data.fd = socket
        var result = epoll_ctl(epollDescriptor, wasRegistered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, socket, &event)
        // The registration can be gone (libpq closed and reopened a socket under the
        // same number) or present when we thought not: try the other operation.
        if result != 0 && (errno == ENOENT || errno == EEXIST) {
            result = epoll_ctl(epollDescriptor, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, socket, &event)
        }
        var problem: (any Error)?
        if result != 0 {
            problem = PostgresError.connectionClosed("cannot watch the Postgres socket (errno \(errno))")
        } else if cancellable && Task.isCancelled {
            // Cancelled before the waiter was in place: the cancel handler found nothing to end.
            problem = CancellationError()
        }
        guard let problem else { return }
        let waiting = state.withLock { state -> Waiter? in
            if result != 0 { state.registered.remove(socket) }
            return state.waiters.removeValue(forKey: socket)
        }
        waiting?.resume(.failure(problem))
    }

    /// Stops watching `socket`; call before libpq closes it (`PQfinish`, `PQreset`).
    public func forget(_ socket: Int32) {
        forget(socket, error: PostgresError.connectionClosed("the connection was closed"))
    }

    private func forget(_ socket: Int32, error: any Error) {
        guard socket >= 0 else { return }
        let waiter: Waiter? = state.withLock { state in
            if state.registered.remove(socket) != nil {
                var event = epoll_event()
                _ = epoll_ctl(epollDescriptor, EPOLL_CTL_DEL, socket, &event)
            }
            return state.waiters.removeValue(forKey: socket)
        }
        waiter?.resume(.failure(error))
    }

    /// Asks the server to cancel what `key`'s connection is running, off the caller's thread.
    func sendCancel(_ key: CancelKey) {
        cancelQueue.async { key.send() }
    }

    /// Stops the thread; every waiting task gets an error.
    public func shutdown() {
        let waiters = state.withLock { state -> [Waiter]? in
            guard !state.stopped else { return nil }
            state.stopped = true
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        // A second call must not write: the thread closes the eventfd once it stopped, and its
        // number may by then belong to a Postgres socket (8 bytes "1" there end that session
        // with "invalid frontend message type 1").
        guard let waiters else { return }
        var one: UInt64 = 1
        _ = Glibc.write(wakeDescriptor, &one, 8)
        for waiter in waiters { waiter.resume(.failure(PostgresError.connectionClosed("the Postgres event loop is shut down"))) }
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(epollDescriptor, $0.baseAddress, Int32($0.count), -1) }
            if count < 0 {
                if errno == EINTR { continue }
                break
            }
            var ready: [(Waiter, Readiness)] = []
            var stop = false
            state.withLock { state in
                for index in 0..<Int(count) {
                    let socket = events[index].data.fd
                    if socket == wakeDescriptor {
                        stop = state.stopped
                        continue
                    }
                    let flags = events[index].events
                    var readiness: Readiness = []
                    // Errors and hang-ups wake a reader and a writer alike: libpq then reports them.
                    if flags & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { readiness.insert(.readable) }
                    if flags & (EPOLLOUT.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { readiness.insert(.writable) }
                    if let waiter = state.waiters.removeValue(forKey: socket) { ready.append((waiter, readiness)) }
                }
            }
            for (waiter, readiness) in ready { waiter.resume(.success(readiness)) }
            if stop { break }
        }
        close(epollDescriptor)
        close(wakeDescriptor)
    }
}

/// A connection's cancel key (`PQgetCancel`), freed when the last user lets go, so a cancel
/// still queued when its connection closed stays valid.
final class CancelKey: Sendable {
    // PGcancel is immutable after PQgetCancel and PQcancel is documented thread-safe.
    nonisolated(unsafe) private let key: OpaquePointer

    init?(_ connection: OpaquePointer) {
        guard let key = PQgetCancel(connection) else { return nil }
        self.key = key
    }

    deinit { PQfreeCancel(key) }

    /// Sends the cancel request (blocks until the server took it).
    func send() {
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(key, &buffer, Int32(buffer.count))
    }
}
