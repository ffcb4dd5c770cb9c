import HTTPTypes
import HummingbirdCore
import MeltyPluginABI
import NIOCore
import NIOHTTPTypes

/// Answers the requests ``DirectRoutes`` takes, in the connection's pipeline between
/// Hummingbird's `HTTPConnectionStateHandler` (which still sees every request and response,
/// for its idle timeout and graceful shutdown) and the channel Hummingbird's request loop
/// reads. Requests are answered strictly in order: while the router has a request of this
/// connection, later ones go to the router too; while a plugin has not yet answered a
/// direct request, later parts wait here.
final class DirectRouteHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum State {
        /// Between requests.
        case idle
        /// Parts of a request the router serves go through until its end.
        case forwarding
        /// Reading the body of a direct request.
        case reading(DirectRoutes.Accepted, ByteBuffer)
        /// Answered early (413, or refused before the body): the rest of the body is dropped.
        case discarding
        /// The whole request is read; the answer has not been written yet.
        case answering
        /// `Connection: close` was answered: nothing more is read.
        case closing
    }

    private let routes: DirectRoutes
    private var state = State.idle
    /// Requests handed to the router whose response has not ended yet.
    private var routerRequests = 0
    /// Parts that arrived while a direct answer was pending, replayed after it.
    private var held: [HTTPRequestPart] = []
    private var closeAfterAnswer = false
    /// The client shut its side while a direct answer was pending: passed on after it.
    private var inputClosedHeld = false
    /// A socket read asked for while a direct answer was pending, issued after it: parts
    /// are held here meanwhile, so reading stops (as the router's channel stops when its
    /// buffer fills) instead of holding whatever a client pipelines.
    private var readHeld = false
    /// The peer's IP as text, formatted once per connection (2,800 instructions each time).
    private var remote: String?

    init(routes: DirectRoutes) {
        self.routes = routes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .answering:
            held.append(part)
            return
        case .closing:
            return
        default:
            read(part, context: context)
        }
    }

    private func read(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (state, part) {
        case (.idle, .head(let head)):
            guard routerRequests == 0, let accepted = routes.accept(head, pipeline: context.pipeline, remoteAddress: { remoteAddress(context) }) else {
                routerRequests += 1
                state = .forwarding
                context.fireChannelRead(wrapInboundOut(part))
                return
            }
            closeAfterAnswer = head.headerFields[.connection] == "close"
            if case .refused = accepted.route {
                state = .discarding
                write(routes.refusal(accepted), context: context)
                if closeAfterAnswer { close(context: context) }
            } else {
                state = .reading(accepted, context.channel.allocator.buffer(capacity: 0))
            }
        case (.forwarding, .end):
            state = .idle
            context.fireChannelRead(wrapInboundOut(part))
        case (.forwarding, _):
            context.fireChannelRead(wrapInboundOut(part))
        case (.reading(let accepted, var body), .body(var chunk)):
            state = .idle  // drop the reference to the buffer while appending
            guard body.readableBytes + chunk.readableBytes <= accepted.bodyLimit else {
                state = .discarding
                write(routes.bodyTooLarge(accepted), context: context)
                if closeAfterAnswer { close(context: context) }
                return
            }
            if body.readableBytes == 0 {
                body = chunk
            } else {
                body.writeBuffer(&chunk)
            }
            state = .reading(accepted, body)
        case (.reading(let accepted, let body), .end):
            state = .answering
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            routes.answer(accepted, body: body, channel: context.channel) { answer in
                if loop.inEventLoop {
                    let (handler, context) = bound.value
                    handler.answered(answer, context: context)
                } else {
                    loop.execute {
                        let (handler, context) = bound.value
                        handler.answered(answer, context: context)
                    }
                }
            }
        case (.discarding, .end):
            state = .idle
        case (.discarding, _):
            break
        default:
            // A part out of order (the decoder never sends one): let the router's loop refuse it.
            state = .forwarding
            routerRequests += 1
            context.fireChannelRead(wrapInboundOut(part))
        }
    }

    private func remoteAddress(_ context: ChannelHandlerContext) -> String {
        if let remote { return remote }
        let text = context.channel.remoteAddress?.ipAddress ?? "unknown"
        remote = text
        return text
    }

    /// The direct answer is ready: write it, then replay what arrived meanwhile. A streamed
    /// answer writes its head now and its body as the plugin sends it; the connection stays
    /// answering until its end.
    private func answered(_ answer: DirectRoutes.Answer, context: ChannelHandlerContext) {
        guard case .answering = state else {
            if case .streamed(_, let body) = answer { Self.refuse(body) }
            return
        }
        switch answer {
        case .whole(let response):
            write(response, context: context)
            answerWritten(context: context)
        case .streamed(let head, let body):
            context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
            streamBody(body, context: context)
        }
    }

    /// The chunks of a streamed answer, each written (and flushed) before the plugin hears
    /// it was: the plugin's `written` completion is the back-pressure. A write that fails
    /// (the client left) refuses the rest and tells the plugin to stop; an abort closes the
    /// connection without finishing the body.
    private func streamBody(_ body: DirectRoutes.StreamedBody, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        Task {
            let ending = await body.events.deliver(
                write: { buffer in
                    body.sent(buffer.readableBytes)
                    try await loop.flatSubmit {
                        let (handler, context) = bound.value
                        return context.writeAndFlush(handler.wrapOutboundOut(.body(buffer)))
                    }.get()
                },
                clientGone: { body.finished(true) })
            switch ending {
            case .ended:
                body.finished(false)
                loop.execute {
                    let (handler, context) = bound.value
                    context.writeAndFlush(handler.wrapOutboundOut(.end(nil)), promise: nil)
                    handler.answerWritten(context: context)
                }
            case .aborted, .clientGone:
                if case .aborted = ending { body.finished(false) }
                loop.execute {
                    let (handler, context) = bound.value
                    handler.close(context: context)
                }
            }
        }
    }

    /// A streamed answer that arrives for a connection that no longer waits: its chunks are refused.
    private static func refuse(_ body: DirectRoutes.StreamedBody) {
        body.finished(true)
        Task { _ = await body.events.deliver(write: { _ in throw ChannelError.ioOnClosedChannel }, clientGone: {}) }
    }

    /// The answer is written: replay what arrived meanwhile.
    private func answerWritten(context: ChannelHandlerContext) {
        guard case .answering = state else { return }
        state = .idle
        if closeAfterAnswer {
            close(context: context)
            return
        }
        // In order; a part that meets another pending answer is held again, behind it.
        let parts = held
        held = []
        for part in parts { channelRead(context: context, data: wrapInboundOut(part)) }
        // Outside a read cycle: without this, parts passed on to the router's channel would
        // wait there for the next read from the socket.
        if !parts.isEmpty { context.fireChannelReadComplete() }
        if inputClosedHeld, !isAnswering {
            inputClosedHeld = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        if readHeld, !isAnswering {
            readHeld = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if isAnswering {
            readHeld = true
            return
        }
        context.read()
    }

    private var isAnswering: Bool {
        if case .answering = state { return true }
        return false
    }

    /// Hummingbird's request loop closes the connection when the client shuts its side; a
    /// direct answer still pending (a plugin answering later) is written first, as the
    /// router's loop would have done.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed, isAnswering {
            inputClosedHeld = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func write(_ response: (HTTPResponse, ByteBuffer), context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(response.0)), promise: nil)
        if response.1.readableBytes > 0 { context.write(wrapOutboundOut(.body(response.1)), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// What Hummingbird's request loop does after answering `Connection: close`.
    private func close(context: ChannelHandlerContext) {
        state = .closing
        held.removeAll()
        context.close(promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), routerRequests > 0 { routerRequests -= 1 }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .reading(let accepted, _) = state { routes.abandon(accepted) }
        context.fireChannelInactive()
    }
}

/// Put into the connection by Hummingbird's `additionalChannelHandlers` (which come before
/// its `HTTPConnectionStateHandler`): on the first request it adds ``DirectRouteHandler``
/// right after that handler, so the state handler keeps counting every request, then
/// leaves the pipeline.
final class DirectRouteInstaller: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let routes: DirectRoutes
    private var installed = false

    init(routes: DirectRoutes) {
        self.routes = routes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !installed {
            installed = true
            let pipeline = context.pipeline.syncOperations
            if let state = try? pipeline.handler(type: HTTPConnectionStateHandler.self) {
                try? pipeline.addHandler(DirectRouteHandler(routes: routes), position: .after(state))
            }
            context.fireChannelRead(data)
            pipeline.removeHandler(context: context, promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}
