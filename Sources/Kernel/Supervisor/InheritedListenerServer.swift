import Foundation
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Serves a Hummingbird child channel (HTTP/1 with WebSocket upgrade, optionally inside
/// TLS) on a listening socket the kernel inherited from its supervisor.
///
/// Hummingbird's `Server` can only bind an address (`BindAddress` has no descriptor case),
/// so this is its accept loop over NIO's `ServerBootstrap.bind(_:)` for an existing socket.
/// The supervisor keeps its own copy of the descriptor: while a worker restarts, new
/// connections wait in the socket's backlog instead of being refused.
///
/// Graceful shutdown matches Hummingbird's: stop accepting (this process's copy of the
/// socket is closed; the supervisor's stays open), tell every open connection to quiesce
/// (finish the request in flight, then close), and return once they are all closed.
struct InheritedListenerServer<ChildChannel: ServerChildChannel>: Service {
    let childChannel: ChildChannel
    /// The inherited listening socket.
    let descriptor: CInt
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    let onServerRunning: @Sendable (any Channel) async -> Void

    func run() async throws {
        let connections = OpenConnections()
        let childChannel = self.childChannel
        let logger = self.logger
        let server = try await ServerBootstrap(group: eventLoopGroup)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .bind(descriptor) { channel in
                connections.add(channel)
                return childChannel.setup(channel: channel, logger: logger)
            }
        // NIO calls listen(128) on an adopted socket (its backlog option applies only to
        // sockets it binds): restore the supervisor's backlog, which holds the connections
        // that arrive while the next worker starts.
        _ = listen(descriptor, ListeningSocket.backlog)
        await withGracefulShutdownHandler {
            await onServerRunning(server.channel)
            await withDiscardingTaskGroup { group in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            group.addTask { await childChannel.handle(value: connection, logger: logger) }
                        }
                    }
                } catch {
                    logger.error("accepting connections on the inherited listener failed: \(error)")
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
            connections.quiesceAll()
        }
    }
}

/// The connections a server accepted and has not seen closed, so shutdown can reach them.
private final class OpenConnections: Sendable {
    private let channels = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    private let quiescing = NIOLockedValueBox(false)

    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        channels.withLockedValue { $0[key] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = channels.withLockedValue { $0.removeValue(forKey: key) }
        }
        // Accepted while shutdown began: it must quiesce too.
        if quiescing.withLockedValue({ $0 }) { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }

    func quiesceAll() {
        quiescing.withLockedValue { $0 = true }
        for channel in channels.withLockedValue({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }
}
