// The peers' clients on the same event loops and counters as the WebSocket clients:
// Redis pub/sub subscribers and a publisher (RESP), Postgres LISTEN (the v3 wire
// protocol over the Unix socket, trust auth), and the HTTP broadcast publisher.
import NIOCore
import NIOHTTP1
import NIOPosix

/// Splits a byte stream into CRLF-terminated lines (RESP's framing; a pub/sub payload
/// without CR or LF is one line).
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let lf = buffer.readableBytesView.firstIndex(of: 0x0A) else { return .needMoreData }
        let length = lf - buffer.readerIndex + 1
        let line = buffer.readSlice(length: length)!
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }
}

/// One Redis subscriber: SUBSCRIBE on connect; the `:1` line of the reply means joined;
/// each line holding the marker is a delivery.
final class RedisSubscriber: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let stats: LoopStats
    private let channelName: String
    private let marker: [UInt8]
    private var joined = false
    private var failed = false

    init(stats: LoopStats, channel: String, marker: [UInt8]) {
        self.stats = stats
        self.channelName = channel
        self.marker = marker
    }

    func channelActive(context: ChannelHandlerContext) {
        stats.connected += 1
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: resp(["SUBSCRIBE", channelName]))), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        let (found, value) = number(after: marker, in: line)
        if found {
            let now = monotonicNanoseconds()
            stats.delivered(latency: value.map { now >= $0 ? (now - $0) / 1000 : 0 }, at: now)
        } else if !joined, line.getInteger(at: line.readerIndex, as: UInt8.self) == UInt8(ascii: ":") {
            joined = true
            stats.joined += 1
        } else if !joined, !failed, line.getInteger(at: line.readerIndex, as: UInt8.self) == UInt8(ascii: "-") {
            failed = true
            stats.fail("redis: \(String(buffer: line))")
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if joined { stats.closedAfterJoin += 1 } else if !failed { stats.fail("redis connection closed before SUBSCRIBE was answered") }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if stats.firstError == nil { stats.firstError = "redis: \(error)" }
        context.close(promise: nil)
    }
}

/// A RESP array of bulk strings.
func resp(_ parts: [String]) -> String {
    var text = "*\(parts.count)\r\n"
    for part in parts { text += "$\(part.utf8.count)\r\n\(part)\r\n" }
    return text
}

/// Discards what it reads (the publisher's `:N` replies), counting lines.
final class Sink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

func openRedisSubscriber(loops: Loops, loopIndex: Int, source: SocketAddress?, port: Int, channel: String, marker: [UInt8]) {
    let loop = loops.loops[loopIndex]
    let bound = loops.stats[loopIndex]
    loop.execute {
        bound.value.started += 1
        var bootstrap = ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .connectTimeout(.seconds(15))
        if let source { bootstrap = bootstrap.bind(to: source) }
        bootstrap.channelInitializer { ch in
            do {
                try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                try ch.pipeline.syncOperations.addHandler(RedisSubscriber(stats: bound.value, channel: channel, marker: marker))
                return ch.eventLoop.makeSucceededVoidFuture()
            } catch { return ch.eventLoop.makeFailedFuture(error) }
        }
        .connect(host: "127.0.0.1", port: port).whenFailure { error in bound.value.fail("redis connect failed: \(error)") }
    }
}

// MARK: - Postgres LISTEN

/// Frames Postgres backend messages: type byte, Int32 length (itself included), body.
struct PostgresMessageDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes >= 5, let length = buffer.getInteger(at: buffer.readerIndex + 1, as: Int32.self) else {
            return .needMoreData
        }
        guard buffer.readableBytes >= Int(length) + 1 else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: Int(length) + 1)!))
        return .continue
    }
}

/// One LISTEN connection: startup (trust auth), `LISTEN channel`, then each notification's
/// payload is a CLOCK_REALTIME µs timestamp compared with now.
final class PostgresListener: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let stats: LoopStats
    private let user: String
    private let database: String
    private let channelName: String
    private var listening = false
    private var joined = false

    init(stats: LoopStats, user: String, database: String, channel: String) {
        self.stats = stats
        self.user = user
        self.database = database
        self.channelName = channel
    }

    func channelActive(context: ChannelHandlerContext) {
        stats.connected += 1
        var body = context.channel.allocator.buffer(capacity: 64)
        body.writeInteger(Int32(196_608))
        for part in ["user", user, "database", database] {
            body.writeString(part)
            body.writeInteger(UInt8(0))
        }
        body.writeInteger(UInt8(0))
        var message = context.channel.allocator.buffer(capacity: body.readableBytes + 4)
        message.writeInteger(Int32(body.readableBytes + 4))
        message.writeBuffer(&body)
        context.writeAndFlush(wrapOutboundOut(message), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var message = unwrapInboundIn(data)
        guard let type = message.readInteger(as: UInt8.self), message.readInteger(as: Int32.self) != nil else { return }
        switch type {
        case UInt8(ascii: "R"):
            if message.readInteger(as: Int32.self) != 0 {
                stats.fail("postgres asked for a password (the generator speaks trust auth only)")
                context.close(promise: nil)
            }
        case UInt8(ascii: "Z"):
            if !listening {
                listening = true
                var query = context.channel.allocator.buffer(capacity: 64)
                let sql = "LISTEN \"\(channelName)\""
                query.writeInteger(UInt8(ascii: "Q"))
                query.writeInteger(Int32(4 + sql.utf8.count + 1))
                query.writeString(sql)
                query.writeInteger(UInt8(0))
                context.writeAndFlush(wrapOutboundOut(query), promise: nil)
            } else if !joined {
                joined = true
                stats.joined += 1
            }
        case UInt8(ascii: "A"):
            _ = message.readInteger(as: Int32.self)
            _ = message.readNullTerminatedString()
            let payload = message.readNullTerminatedString() ?? ""
            let now = monotonicNanoseconds()
            let wall = realtimeMicroseconds()
            let sent = UInt64(payload.filter(\.isNumber))
            stats.delivered(latency: sent.map { wall >= $0 ? wall - $0 : 0 }, at: now)
        case UInt8(ascii: "E"):
            stats.fail("postgres: \(String(buffer: message).split(separator: "\0").joined(separator: " "))")
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if joined { stats.closedAfterJoin += 1 } else { stats.fail("postgres connection closed before LISTEN took effect") }
        context.fireChannelInactive()
    }
}

func openPostgresListener(loops: Loops, loopIndex: Int, socketPath: String, user: String, database: String, channel: String) {
    let loop = loops.loops[loopIndex]
    let bound = loops.stats[loopIndex]
    loop.execute {
        bound.value.started += 1
        ClientBootstrap(group: loop).channelInitializer { ch in
            do {
                try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(PostgresMessageDecoder()))
                try ch.pipeline.syncOperations.addHandler(PostgresListener(stats: bound.value, user: user, database: database, channel: channel))
                return ch.eventLoop.makeSucceededVoidFuture()
            } catch { return ch.eventLoop.makeFailedFuture(error) }
        }
        .connect(unixDomainSocketPath: socketPath).whenFailure { error in bound.value.fail("postgres connect failed: \(error)") }
    }
}

// MARK: - HTTP broadcast publisher

/// Counts the answers of POST /realtime/v1/api/broadcast (pipelined on one keep-alive connection).
final class HTTPAnswerCounter: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let stats: LoopStats
    private(set) var answers = 0
    private(set) var bad = 0

    init(stats: LoopStats) { self.stats = stats }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            answers += 1
            if !(200..<300).contains(Int(head.status.code)) {
                bad += 1
                if stats.firstError == nil { stats.firstError = "broadcast API answered \(head.status.code)" }
            }
        case .body(let body):
            if bad > 0 && stats.firstError?.hasPrefix("broadcast API answered") == true && !(stats.firstError!.contains(":")) {
                stats.firstError! += ": " + String(buffer: body).prefix(300)
            }
        case .end:
            break
        }
    }
}
