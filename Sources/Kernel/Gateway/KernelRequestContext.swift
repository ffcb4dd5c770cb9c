import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// Per-request context of the gateway: the channel (for the peer address and certificate),
/// the body limit from `plugins.toml`, and the WebSocket upgrade slot.
public struct KernelRequestContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    /// Hummingbird's own per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// Where a WebSocket route leaves its handler for the upgrade.
    public let webSocket: WebSocketHandlerReference<KernelRequestContext>
    /// The connection's channel.
    public let channel: any Channel
    /// Request id (from a sane `x-request-id` header, else generated).
    public var requestID: String = ""

    /// Whether any listener speaks TLS (otherwise no request can carry a client certificate).
    nonisolated(unsafe) static var anyListenerUsesTLS = false

    /// Largest accepted body; set process-wide from `[kernel] body_limit_bytes`.
    nonisolated(unsafe) static var bodyLimit = 2 * 1024 * 1024

    /// Builds the context for a request arriving on `source.channel`.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        channel = source.channel
    }

    /// The peer's address.
    public var remoteAddress: SocketAddress? { channel.remoteAddress }

    /// The configured body limit.
    public var maxUploadSize: Int { Self.bodyLimit }

    /// The peer's IP as text (`127.0.0.1`), or `unknown`.
    public var clientAddress: String { remoteAddress?.ipAddress ?? "unknown" }
}
