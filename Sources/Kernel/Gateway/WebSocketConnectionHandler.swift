import MeltyPluginABI
import NIOCore
import NIOWebSocket

/// One upgraded WebSocket connection, served in its channel pipeline on its event loop:
/// no task waits for its frames, so an idle socket costs its channel and this handler.
///
/// Behind NIO's frame decoder and ``NIOWebSocketFrameAggregator`` (fragmented messages
/// arrive whole), it answers pings, sends a ping every ``pingInterval`` and closes a
/// connection that sent nothing since the previous one (a dead peer), runs the closing
/// handshake both ways, refuses text that is not UTF-8 (1007), and hands each message
/// to the plugin's `ws_message`. Messages that arrive while the gateway is still opening
/// the connection with its plugin (``activate(_:)``) wait here, bounded. When the channel
/// goes, the plugin hears `ws_close` once and the connection leaves the kernel's hub.
final class WebSocketConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// The plugin's side of an opened connection.
    struct Session: Sendable {
        /// The plugin instance, retained until the connection ends.
        let instance: PluginInstance
        /// The connection's id in the kernel's hub (what `ws_send` names).
        let connection: UInt64
        /// The kernel's WebSocket hub (the connection leaves it when the channel goes).
        let hub: WebSocketHub
        /// The plugin's `ws_message` and `ws_close`, looked up once (nil when it has none).
        let onMessage: (@convention(c) (OpaquePointer?, mb_connection_id, Int32, mb_host_bytes) -> Void)?
        let onClose: (@convention(c) (OpaquePointer?, mb_connection_id, UInt16) -> Void)?

        /// The session of `connection` (in `hub`) with `instance`, whose callbacks it looks up.
        init(instance: PluginInstance, connection: UInt64, hub: WebSocketHub) {
            self.instance = instance
            self.connection = connection
            self.hub = hub
            let descriptor = instance.plugin.descriptor
            onMessage = PluginDescriptorLayout.has(\.ws_message, in: descriptor) ? descriptor.pointee.ws_message : nil
            onClose = PluginDescriptorLayout.has(\.ws_close, in: descriptor) ? descriptor.pointee.ws_close : nil
        }
    }

    private enum Phase {
        /// ws_open has not answered yet: messages wait (`bytes` of them).
        case opening(waiting: [WebSocketFrame], bytes: Int)
        case open(Session)
        case closed
    }

    /// How often an idle connection is pinged; one that sent nothing for a whole period
    /// after a ping is closed.
    static let pingInterval: TimeAmount = .seconds(30)
    /// How long the client may take to answer a close frame before the socket is dropped.
    static let closeTimeout: TimeAmount = .seconds(5)
    /// Messages that may wait while the connection opens.
    static let maxWaitingMessages = 64

    private let maxMessageBytes: Int
    private var phase = Phase.opening(waiting: [], bytes: 0)
    private var context: ChannelHandlerContext?
    private var closeSent = false
    /// What the plugin's ws_close is told: 1000, or 1002 after a protocol error.
    private var closeCode: UInt16 = 1000
    private var heardSincePing = true
    private var pinger: Scheduled<Void>?

    /// A handler for messages of at most `maxMessageBytes`.
    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        schedulePing(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        pinger?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        heardSincePing = true
        switch frame.opcode {
        case .connectionClose:
            if closeSent {
                context.close(promise: nil)
            } else {
                // Answer with the client's code (or 1000 when it gave none), then close.
                var data = frame.unmaskedData
                let code = data.readableBytes >= 2 ? data.readInteger(as: UInt16.self) ?? 1000 : 1000
                closeSent = true
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(Self.closeFrame(code: code, reason: "")))
                    .whenComplete { _ in channel.close(promise: nil) }
            }
        case .ping:
            guard !closeSent else { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            break
        case .text, .binary:
            guard !closeSent else { return }
            switch phase {
            case .opening(var waiting, let bytes):
                guard waiting.count < Self.maxWaitingMessages, bytes + frame.length <= maxMessageBytes else {
                    sendClose(code: 1008, reason: "too many messages before the connection was open")
                    return
                }
                waiting.append(frame)
                phase = .opening(waiting: waiting, bytes: bytes + frame.length)
            case .open(let session):
                deliver(frame, to: session)
            case .closed:
                break
            }
        default:
            closeCode = 1002
            sendClose(code: 1002, reason: "unexpected frame")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeCode = 1002
        switch error {
        case NIOWebSocketFrameAggregator.Error.accumulatedFrameSizeIsTooLarge:
            sendClose(code: 1009, reason: "message larger than \(maxMessageBytes) bytes")
        case is NIOWebSocketFrameAggregator.Error:
            sendClose(code: 1002, reason: "fragmented message out of order")
        default:
            // The decoder's own protocol errors are answered by NIO's error handler; I/O errors end the socket.
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pinger?.cancel()
        if case .open(let session) = phase { Self.end(session, code: closeCode) }
        phase = .closed
        context.fireChannelInactive()
    }

    /// On the event loop: the plugin accepted the connection; waiting messages go to it now.
    /// A connection that closed meanwhile is ended at once (the plugin hears ws_close).
    func activate(_ session: Session) {
        switch phase {
        case .opening(let waiting, _):
            phase = .open(session)
            for frame in waiting {
                guard case .open = phase, !closeSent else { break }
                deliver(frame, to: session)
            }
        case .open, .closed:
            Self.end(session, code: closeCode)
        }
    }

    /// On the event loop: sends a close frame with `code` and `reason` (at most 123 bytes of
    /// it), then drops the socket when the client answers or after ``closeTimeout``.
    func sendClose(code: UInt16, reason: String) {
        guard !closeSent, let context else { return }
        closeSent = true
        context.writeAndFlush(wrapOutboundOut(Self.closeFrame(code: code, reason: reason)), promise: nil)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: Self.closeTimeout) { channel.close(promise: nil) }
    }

    private func deliver(_ frame: WebSocketFrame, to session: Session) {
        let isText = frame.opcode == .text
        let payload = frame.unmaskedData
        let valid = payload.withUnsafeReadableBytes { raw -> Bool in
            if isText && String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self) == nil { return false }
            session.onMessage?(
                session.instance.pointer, session.connection, isText ? 1 : 0,
                mb_host_bytes(data: raw.baseAddress?.assumingMemoryBound(to: UInt8.self), len: raw.count))
            return true
        }
        if !valid {
            closeCode = 1002
            sendClose(code: 1007, reason: "text message is not valid UTF-8")
        }
    }

    private func schedulePing(_ context: ChannelHandlerContext) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        pinger = context.eventLoop.scheduleTask(in: Self.pingInterval) {
            handler.value.ping()
        }
    }

    /// Every ``pingInterval``: a ping, or the end of a connection that answered none.
    private func ping() {
        guard let context, !closeSent else { return }
        guard heardSincePing else {
            // Nothing since the last ping, not even its pong: the peer is gone.
            context.close(promise: nil)
            return
        }
        heardSincePing = false
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
        schedulePing(context)
    }

    /// The plugin hears the end of `session` and the hub forgets it.
    private static func end(_ session: Session, code: UInt16) {
        session.hub.remove(session.connection)
        session.onClose?(session.instance.pointer, session.connection, code)
        session.instance.release()
    }

    /// A close frame: the code, then the reason cut to the 123 bytes a close frame allows.
    static func closeFrame(code: UInt16, reason: String) -> WebSocketFrame {
        var data = ByteBuffer()
        data.writeInteger(code)
        data.writeString(PortalRouteHandler.closeReason(reason))
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }
}
