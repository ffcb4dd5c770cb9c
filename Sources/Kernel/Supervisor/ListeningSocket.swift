import Foundation
import NIOCore

/// A TCP socket the supervisor binds and listens on once, and hands to every worker.
///
/// The supervisor never accepts on it. Because it stays open while a worker restarts,
/// connections arriving in that gap wait in the backlog and are served by the next worker
/// instead of being refused. The descriptor is close-on-exec: only the worker receives it,
/// by an explicit `dup2` at spawn.
struct ListeningSocket: Sendable {
    /// The listening socket.
    let descriptor: CInt
    /// The bound port (the chosen one when the listener asked for port 0).
    let port: Int

    /// The listen backlog (capped by the kernel's net.core.somaxconn).
    static let backlog: CInt = 1024

    /// Binds `host:port` (SO_REUSEADDR, as Hummingbird does) and listens.
    static func bind(host: String, port: Int) throws -> ListeningSocket {
        let address: SocketAddress
        do {
            address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch {
            throw SupervisorError.cannotListen(host: host, port: port, reason: "the host does not resolve (\(error))")
        }
        let family: CInt = address.protocol == .inet6 ? AF_INET6 : AF_INET
        let descriptor = socket(family, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw SupervisorError.cannotListen(host: host, port: port, reason: Self.lastError) }
        var one: CInt = 1
        let bound =
            setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)) == 0
            && address.withSockAddr { pointer, size in Glibc.bind(descriptor, pointer, socklen_t(size)) } == 0
            && listen(descriptor, Self.backlog) == 0
        guard bound else {
            let reason = Self.lastError
            _ = Glibc.close(descriptor)
            throw SupervisorError.cannotListen(host: host, port: port, reason: reason)
        }
        var local = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let boundPort =
            withUnsafeMutablePointer(to: &local) { storage in
                storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
            } == 0 ? Self.port(of: local) : port
        return ListeningSocket(descriptor: descriptor, port: boundPort)
    }

    /// Closes the supervisor's copy (workers' copies close with them).
    func close() {
        _ = Glibc.close(descriptor)
    }

    private static func port(of storage: sockaddr_storage) -> Int {
        let family = storage.ss_family
        var storage = storage
        return withUnsafePointer(to: &storage) { pointer in
            if family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    private static var lastError: String { String(cString: strerror(errno)) }
}
