// The bare swift-nio HTTP/1 peer of Benchmarks/gateway.sh: one handler that answers
// every request with the same status, headers and body bytes (those the kernel sent
// for GET /v1/system/status), on swift-nio's stock HTTP/1 pipeline. It is the ceiling
// a Swift server on NIO can reach here, measured beside the kernel in the same run.
//
// usage: bench-nio-peer --port N --body FILE [--headers FILE] [--threads N]
//   --headers  a curl -D dump; every header but the ones NIO or this server writes
//              (date, content-length, connection, keep-alive, transfer-encoding) is
//              sent as captured. A Date header is added, refreshed once a second, as
//              the kernel and nginx send one.
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// What every request gets back, built once.
struct CannedResponse: Sendable {
    var headers: [(String, String)]
    var body: ByteBuffer
}

/// `Date` header text, refreshed once a second per event loop.
final class DateCache {
    private var second = 0
    private(set) var text = ""
    private let formatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter
    }()

    func now() -> String {
        let current = Int(Date().timeIntervalSince1970)
        if current != second {
            second = current
            text = formatter.string(from: Date(timeIntervalSince1970: Double(current)))
        }
        return text
    }
}

/// Answers each complete request with the canned response; keeps the connection open
/// unless the client asked to close it.
final class CannedResponder: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let canned: CannedResponse
    private let dates: DateCache
    private var keepAlive = true

    init(canned: CannedResponse, dates: DateCache) {
        self.canned = canned
        self.dates = dates
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            var headers = HTTPHeaders(canned.headers)
            headers.add(name: "date", value: dates.now())
            headers.add(name: "content-length", value: String(canned.body.readableBytes))
            if !keepAlive { headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(canned.body))), promise: nil)
            if keepAlive {
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}

func argument(_ name: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("bench-nio-peer: \(message)\n".utf8))
    exit(2)
}

guard let portText = argument("--port"), let port = Int(portText) else {
    fail("usage: bench-nio-peer --port N --body FILE [--headers FILE] [--threads N]")
}
guard let bodyPath = argument("--body"), let bodyData = FileManager.default.contents(atPath: bodyPath) else {
    fail("--body names no readable file")
}
var headers: [(String, String)] = []
if let headersPath = argument("--headers") {
    guard let dump = FileManager.default.contents(atPath: headersPath) else { fail("--headers names no readable file") }
    let own: Set<String> = ["date", "content-length", "connection", "keep-alive", "transfer-encoding"]
    for line in String(decoding: dump, as: UTF8.self).components(separatedBy: "\r\n").dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        let name = String(line[..<colon])
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        if !own.contains(name.lowercased()) { headers.append((name, value)) }
    }
}
let canned = CannedResponse(headers: headers, body: ByteBuffer(bytes: bodyData))
let threads = argument("--threads").flatMap(Int.init) ?? System.coreCount

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.maxMessagesPerRead, value: 16)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(CannedResponder(canned: canned, dates: DateCache()))
        }
    }
do {
    let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
    FileHandle.standardError.write(Data("bench-nio-peer: listening on 127.0.0.1:\(channel.localAddress?.port ?? port)\n".utf8))
    try channel.closeFuture.wait()
} catch {
    fail("\(error)")
}
