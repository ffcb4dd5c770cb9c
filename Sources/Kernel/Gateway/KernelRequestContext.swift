import Hummingbird
import NIOConcurrencyHelpers
import NIOCore

/// Per-request context of the gateway: the channel (for the peer address and certificate),
/// the body limit from `plugins.toml`, and the WebSocket upgrade slot.
public struct KernelRequestContext: RequestContext, RemoteAddressRequestContext {
    /// Hummingbird's own per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// Where the WebSocket route leaves the context its middleware made (request id, client
    /// address) for the upgrade (``KernelConnectionChannel``); shared by the context's copies.
    let admittedWebSocket: AdmittedWebSocket
    /// The connection's channel.
    public let channel: any Channel
    /// Request id (from a sane `x-request-id` header, else generated).
    public var requestID: String = ""

    /// Largest accepted body: the kernel's `[kernel] body_limit_bytes`, set by ``GatewayMiddleware``.
    public var bodyLimit = KernelRequestContext.defaultBodyLimit

    /// `body_limit_bytes` when the file does not set it.
    public static let defaultBodyLimit = 2 * 1024 * 1024

    /// Builds the context for a request arriving on `source.channel`.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        admittedWebSocket = AdmittedWebSocket()
        channel = source.channel
    }

    /// The peer's address.
    public var remoteAddress: SocketAddress? { channel.remoteAddress }

    /// The configured body limit.
    public var maxUploadSize: Int { bodyLimit }

    /// The client's address named by a trusted proxy's `X-Forwarded-For` (set by
    /// ``GatewayMiddleware``), nil when the peer is the client.
    public var forwardedClient: String? = nil

    /// The client's IP as text (`127.0.0.1`): the peer's, or the one a trusted proxy forwarded; `unknown` without either.
    public var clientAddress: String { forwardedClient ?? remoteAddress?.ipAddress ?? "unknown" }

    /// Whether the client is on this machine (loopback-only routes): behind a trusted proxy,
    /// the forwarded client's address decides, not the proxy's.
    public var isLoopbackClient: Bool {
        if let forwardedClient { return TrustedProxies.isLoopback(forwardedClient) }
        return remoteAddress?.isLoopback ?? false
    }
}

/// The request context a WebSocket upgrade was admitted with (see ``KernelRequestContext``).
final class AdmittedWebSocket: Sendable {
    private let slot = NIOLockedValueBox<KernelRequestContext?>(nil)

    /// Leaves `context` for the upgrade.
    func admit(_ context: KernelRequestContext) { slot.withLockedValue { $0 = context } }

    /// The admitted context, once; nil when the route did not admit the request.
    func take() -> KernelRequestContext? {
        slot.withLockedValue { value in
            defer { value = nil }
            return value
        }
    }
}
