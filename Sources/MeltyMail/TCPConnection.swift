import Foundation
import MeltyPostgres

/// A non-blocking TCP socket whose waits go through the shared ``PostgresEventLoop``,
/// each bounded by a deadline. Used by one task at a time.
final class TCPConnection {
    /// The socket.
    let descriptor: Int32
    private let loop: PostgresEventLoop
    private var isClosed = false

    private init(descriptor: Int32, loop: PostgresEventLoop) {
        self.descriptor = descriptor
        self.loop = loop
    }

    deinit { close() }

    /// Resolves `host` (off the event loop) and connects to its addresses in turn (IPv6
    /// and IPv4), each attempt bounded by `timeout`.
    static func connect(host: String, port: Int, timeout: Duration, loop: PostgresEventLoop) async throws -> TCPConnection {
        guard (1...65535).contains(port) else { throw ConnectionProblem.configuration("the port \(port) is not between 1 and 65535") }
        let addresses = try await resolve(host: host, port: port, deadline: .now + timeout)
        var failures: [String] = []
        for address in addresses {
            do {
                return try await connect(to: address, deadline: .now + timeout, loop: loop)
            } catch ConnectionProblem.system(let reason) {
                failures.append(reason)
            } catch ConnectionProblem.timeout where addresses.count > 1 {
                failures.append("\(address.text): no answer")
            }
        }
        guard !failures.isEmpty else { throw ConnectionProblem.timeout }
        throw ConnectionProblem.system(failures.joined(separator: "; "))
    }

    /// One resolved socket address.
    struct Address: Sendable {
        var family: Int32
        var bytes: [UInt8]
        var text: String
    }

    /// getaddrinfo on a dispatch queue: it blocks and cannot be cancelled, so a timeout
    /// abandons it (it finishes in the background).
    static func resolve(host: String, port: Int, deadline: ContinuousClock.Instant) async throws -> [Address] {
        try await withCheckedThrowingContinuation { continuation in
            let gate = ResumeOnce(continuation)
            let remaining = ContinuousClock.now.duration(to: deadline)
            let seconds = Double(remaining.components.seconds) + Double(remaining.components.attoseconds) / 1e18
            DispatchQueue.global().asyncAfter(deadline: .now() + max(0, seconds)) { gate.resume(with: .failure(ConnectionProblem.timeout)) }
            DispatchQueue.global().async { gate.resume(with: Result { try resolveNow(host: host, port: port) }) }
        }
    }

    private static func resolveNow(host: String, port: Int) throws -> [Address] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0 else {
            let reason = String(cString: gai_strerror(status))
            if status == EAI_AGAIN { throw ConnectionProblem.system("cannot resolve \(host): \(reason)") }
            throw ConnectionProblem.configuration("cannot resolve \(host): \(reason); check the host name")
        }
        defer { freeaddrinfo(list) }
        var addresses: [Address] = []
        var entry = list
        while let current = entry {
            let info = current.pointee
            if let socketAddress = info.ai_addr, info.ai_family == AF_INET || info.ai_family == AF_INET6 {
                let bytes = Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(socketAddress), count: Int(info.ai_addrlen)))
                var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                let text: String
                if getnameinfo(socketAddress, info.ai_addrlen, &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST) == 0 {
                    let numeric = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    text = info.ai_family == AF_INET6 ? "[\(numeric)]:\(port)" : "\(numeric):\(port)"
                } else {
                    text = "\(host):\(port)"
                }
                addresses.append(Address(family: info.ai_family, bytes: bytes, text: text))
            }
            entry = info.ai_next
        }
        guard !addresses.isEmpty else { throw ConnectionProblem.configuration("\(host) has no IPv4 or IPv6 address") }
        return addresses
    }

    private static func connect(to address: Address, deadline: ContinuousClock.Instant, loop: PostgresEventLoop) async throws -> TCPConnection {
        let descriptor = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw ConnectionProblem.system("socket() failed: \(String(cString: strerror(errno)))") }
        let connection = TCPConnection(descriptor: descriptor, loop: loop)
        var one: Int32 = 1
        _ = setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let (result, connectErrno) = address.bytes.withUnsafeBytes { raw -> (Int32, Int32) in
            guard let base = raw.baseAddress else { return (-1, EINVAL) }
            let result = Glibc.connect(descriptor, base.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            return (result, errno)
        }
        if result != 0 {
            guard connectErrno == EINPROGRESS || connectErrno == EINTR else {
                throw ConnectionProblem.system("\(address.text): \(String(cString: strerror(connectErrno)))")
            }
            try await connection.waitUntil(.writable, deadline: deadline)
            var socketError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &socketError, &length) == 0 else {
                throw ConnectionProblem.system("\(address.text): \(String(cString: strerror(errno)))")
            }
            guard socketError == 0 else { throw ConnectionProblem.system("\(address.text): \(String(cString: strerror(socketError)))") }
        }
        return connection
    }

    /// Up to `maximum` bytes; empty at end of stream.
    func read(maximum: Int, deadline: ContinuousClock.Instant) async throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maximum)
        while true {
            let (count, readErrno) = buffer.withUnsafeMutableBytes { raw -> (Int, Int32) in
                let count = recv(descriptor, raw.baseAddress, raw.count, 0)
                return (count, errno)
            }
            if count >= 0 { return Array(buffer.prefix(count)) }
            switch readErrno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try await waitUntil(.readable, deadline: deadline)
            case ECONNRESET: throw ConnectionProblem.closed
            default: throw ConnectionProblem.system("read failed: \(String(cString: strerror(readErrno)))")
            }
        }
    }

    /// Writes all of `bytes` (MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE).
    func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) async throws {
        var offset = 0
        while offset < bytes.count {
            let (count, writeErrno) = bytes.withUnsafeBytes { raw -> (Int, Int32) in
                guard let base = raw.baseAddress else { return (0, 0) }
                let count = send(descriptor, base + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                return (count, errno)
            }
            if count > 0 {
                offset += count
                continue
            }
            switch writeErrno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try await waitUntil(.writable, deadline: deadline)
            case EPIPE, ECONNRESET: throw ConnectionProblem.closed
            default: throw ConnectionProblem.system("write failed: \(String(cString: strerror(writeErrno)))")
            }
        }
    }

    /// Writes what the socket takes now, without waiting (for a last TLS close_notify).
    func writeWithoutWaiting(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            _ = send(descriptor, base, raw.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
        }
    }

    /// Suspends until the socket is ready or `deadline` passes (``ConnectionProblem/timeout``).
    /// The wait is the event loop's cancellable one: the timer cancels it, which unwatches
    /// the socket.
    func waitUntil(_ readiness: PostgresEventLoop.Readiness, deadline: ContinuousClock.Instant) async throws {
        let loop = self.loop
        let descriptor = self.descriptor
        let ready = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = try await loop.wait(for: descriptor, readiness, cancellable: true)
                return true
            }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return false
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
        guard ready else { throw ConnectionProblem.timeout }
    }

    /// Unwatches and closes the socket (idempotent).
    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.forget(descriptor)
        _ = Glibc.close(descriptor)
    }
}
