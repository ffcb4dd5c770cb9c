import NIOCore

/// Writes already encoded WebSocket frames into a connection's pipeline just below NIO's
/// frame encoder (above TLS, when there is TLS): a broadcast encodes its frame once and each
/// connection writes the same bytes, without a pass through the encoder and the handlers
/// above it. Frames written here and frames the encoder writes (pings, pongs, closes) leave
/// in the order they were written, as both run on the connection's event loop.
final class WebSocketRawWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// On the event loop: queues `frame` (a whole encoded frame) for the socket.
    func write(_ frame: ByteBuffer) {
        context?.write(wrapOutboundOut(frame), promise: nil)
    }

    /// On the event loop: sends what was written.
    func flush() {
        context?.flush()
    }
}
