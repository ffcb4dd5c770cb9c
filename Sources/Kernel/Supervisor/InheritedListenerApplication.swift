import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The gateway's router served on a listening socket inherited from the supervisor: what
/// Hummingbird's `Application.run()` does for a bound address, for a descriptor.
///
/// The request path is the same as `Application`'s: one context per request, errors the
/// router did not turn into a response become a bare 500, HTTP parser errors go back to
/// the channel handler (which answers 400 and closes), and every response carries `Date`.
struct InheritedListenerApplication: Service {
    let responder: RouterResponder<KernelRequestContext>
    /// Builds the connection pipeline (HTTP/1 with WebSocket upgrade, TLS when configured)
    /// around the HTTP responder.
    let childChannel: @Sendable (@escaping HTTPChannelHandler.Responder) throws -> any ServerChildChannel
    let descriptor: CInt
    let logger: Logger
    let onServerRunning: @Sendable (any Channel) async -> Void

    func run() async throws {
        let responder = self.responder
        let logger = self.logger
        let dates = HTTPDateHeader()
        let channel = try childChannel { (request: Request, responseWriter: consuming ResponseWriter, channel: any Channel) in
            var requestLogger = logger
            requestLogger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
            let context = KernelRequestContext(source: .init(channel: channel, logger: requestLogger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch let error as HTTPParserError {
                throw error
            } catch {
                requestLogger.debug("Unrecognised Error", metadata: ["error.type": "\(error)"])
                response = Response(status: .internalServerError, body: .init())
            }
            response.headers[.date] = dates.current
            do {
                try await responseWriter.write(response: response.head, body: response.body)
            } catch is HTTPParserError {
                // Not the parser error itself: the channel handler would answer it with a second response.
                throw ParseErrorWhileWritingResponse()
            }
        }
        try await serve(channel)
    }

    private func serve<Child: ServerChildChannel>(_ child: Child) async throws {
        let server = InheritedListenerServer(
            childChannel: child, descriptor: descriptor, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
            logger: logger, onServerRunning: onServerRunning)
        try await server.run()
    }
}

/// Ends the connection without a second response (Hummingbird's own error for this is `package`).
private struct ParseErrorWhileWritingResponse: Error {}

/// The `Date` response header (RFC 9110 IMF-fixdate), formatted at most once a second.
final class HTTPDateHeader: Sendable {
    private let cache = NIOLockedValueBox<(second: time_t, text: String)>((0, ""))

    var current: String {
        var now = time(nil)
        if let cached = cache.withLockedValue({ $0.second == now ? $0.text : nil }) { return cached }
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        let text = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        cache.withLockedValue { $0 = (now, text) }
        return text
    }
}
