import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The gateway's connections: HTTP/1.1 served by Hummingbird, with an upgrade to WebSocket
/// that the WebSocket router admits (its middleware: request id, client address, rate
/// limit). An upgraded socket is served in its pipeline by ``WebSocketConnectionHandler``;
/// the connection's task only opens it with its plugin (``WebSocketUpgrade``) and ends, so
/// tens of thousands of idle sockets hold no task, no async frames and no request each.
struct KernelConnectionChannel: ServerChildChannel, HTTPChannelHandler {
    /// What the first request of a connection turned into.
    enum UpgradeResult: Sendable {
        case webSocket(WebSocketUpgrade)
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case failedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    /// The negotiation's outcome and the channel.
    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    /// Answers plain HTTP requests (Hummingbird's router).
    let responder: HTTPChannelHandler.Responder
    /// Runs the WebSocket router for an upgrade request; the request context it admitted
    /// (after its middleware) and the response headers, or nil to refuse the upgrade.
    let admit: @Sendable (Request, any Channel, Logger) async -> (KernelRequestContext, HTTPFields)?
    /// Opens an admitted connection with its plugin (in the connection's task, which ends after).
    let open: @Sendable (WebSocketUpgrade) async -> Void
    /// HTTP/1.1 settings (extra handlers, idle timeout).
    let http1: HTTP1Channel.Configuration
    /// Largest WebSocket message (and frame) accepted.
    let maxMessageBytes: Int

    /// A connection channel answering HTTP with `responder`, admitting upgrades with `admit`
    /// and opening them with `open`.
    init(
        responder: @escaping HTTPChannelHandler.Responder, admit: @escaping @Sendable (Request, any Channel, Logger) async -> (KernelRequestContext, HTTPFields)?,
        open: @escaping @Sendable (WebSocketUpgrade) async -> Void, http1: HTTP1Channel.Configuration, maxMessageBytes: Int
    ) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.admit = admit
        self.open = open
        self.http1 = http1
        self.maxMessageBytes = maxMessageBytes
    }

    /// Only a connection's first request can upgrade (NIO's upgrade handler leaves the
    /// pipeline after it). A later upgrade request on a kept-alive connection (a proxy
    /// reusing its backend connections does this) is answered 307 to the same address with
    /// `Connection: close`, so the client asks again on a new connection, as Hummingbird's
    /// own WebSocket channel does.
    static func redirectingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder) -> HTTPChannelHandler.Responder {
        { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                try await responder(request, writer, channel)
                return
            }
            var location = request.uri.path
            if let query = request.uri.query { location += "?" + query }
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw LateUpgrade()
        }
    }

    /// Ends a connection after the redirect of a late upgrade.
    private struct LateUpgrade: Error {}

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let upgradeAttempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let admitted = NIOLoopBoundBox<(Request, KernelRequestContext)?>(nil, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: maxMessageBytes,
                shouldUpgrade: { channel, head in
                    upgradeAttempted.value = true
                    let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
                    promise.completeWithTask {
                        let request = Request(head: try HTTPRequest(head, secure: false, splitCookie: false), body: .init(buffer: ByteBuffer()))
                        guard let (context, headers) = await admit(request, channel, logger) else { return nil }
                        try await channel.eventLoop.submit { admitted.value = (request, context) }.get()
                        return HTTPHeaders(headers)
                    }
                    return promise.futureResult
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let (request, context) = admitted.value else {
                            throw ChannelError.inappropriateOperationForState
                        }
                        let handler = WebSocketConnectionHandler(maxMessageBytes: maxMessageBytes)
                        try channel.pipeline.syncOperations.addHandlers([
                            NIOWebSocketFrameAggregator(
                                minNonFinalFragmentSize: 1, maxAccumulatedFrameCount: 1_000, maxAccumulatedFrameSize: maxMessageBytes),
                            handler,
                        ])
                        // Encoded frames from the hub go in below the encoder (WebSocketRawWriter).
                        let writer = WebSocketRawWriter()
                        let encoder = try channel.pipeline.syncOperations.handler(type: WebSocketFrameEncoder.self)
                        try channel.pipeline.syncOperations.addHandler(writer, position: .before(encoder))
                        return .webSocket(
                            WebSocketUpgrade(
                                request: request, context: context, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop),
                                writer: NIOLoopBound(writer, eventLoop: channel.eventLoop)))
                    }
                }
            )
            let serverUpgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandlers(http1.additionalChannelHandlers())
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: http1.idleTimeout.map { .init($0) }, logger: logger))
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return upgradeAttempted.value ? .failedUpgrade(asyncChannel) : .notUpgraded(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: serverUpgradeConfiguration)
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            configuration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            configuration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            configuration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(upgradeResult: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .notUpgraded(let http1):
                await handleHTTP(asyncChannel: http1, logger: logger)
            case .failedUpgrade(let http1):
                await Self.refuseUpgrade(http1, logger: logger)
            case .webSocket(let upgrade):
                await open(upgrade)
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("connection closed before its first request")
        } catch {
            logger.debug("connection setup failed", metadata: ["error": "\(error)"])
        }
    }

    /// A refused upgrade: 400 with no body, and the connection closes.
    private static func refuseUpgrade(_ channel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, logger: Logger) async {
        do {
            try await channel.executeThenClose { _, outbound in
                let head = HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])
                try await outbound.write(contentsOf: [.head(head), .end(nil)])
            }
        } catch {
            logger.trace("could not answer a refused upgrade: \(error)")
        }
    }
}

/// An upgraded WebSocket connection on its way to its plugin: the upgrade request, the
/// context the gateway's middleware left, and the connection's handler (on its event loop).
struct WebSocketUpgrade: Sendable {
    /// The HTTP request that asked for the upgrade.
    let request: Request
    /// Its request context (request id, client address).
    let context: KernelRequestContext
    /// The handler serving the socket.
    let handler: NIOLoopBound<WebSocketConnectionHandler>
    /// Where the hub writes encoded frames.
    let writer: NIOLoopBound<WebSocketRawWriter>

    /// The connection's channel.
    var channel: any Channel { context.channel }

    /// The plugin accepted the connection: messages flow to it from now on.
    func activate(_ session: WebSocketConnectionHandler.Session) {
        let handler = handler
        channel.eventLoop.execute { handler.value.activate(session) }
    }

    /// Closes the connection because of `error` (nothing was opened): a gateway refusal with
    /// its message, 1013 when rate limited and 1008 otherwise; anything else 1011.
    func refuse(_ error: any Error) {
        guard let refusal = error as? GatewayError else {
            refuse(code: 1011, reason: "the gateway could not open the connection")
            return
        }
        refuse(code: refusal.statusCode == 429 ? 1013 : 1008, reason: refusal.message)
    }

    /// Closes the connection with `code` and `reason` (a refusal: nothing was opened).
    func refuse(code: UInt16, reason: String) {
        let handler = handler
        channel.eventLoop.execute { handler.value.sendClose(code: code, reason: reason) }
    }
}
