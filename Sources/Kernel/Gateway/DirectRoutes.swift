import Foundation
import HTTPTypes
import Logging
import MeltyPluginABI
import NIOCore
import NIOSSL

/// The routes the gateway answers on the connection's event loop, without Hummingbird's
/// router, middleware chain and task hops: `GET /v1/system/status`, `GET|POST
/// /v1/system/echo` and the portal routes `/p/<portal>/<prefix>/...` (the hot paths of
/// issue 11). A request takes this path only when nothing on the way would suspend; a
/// rate-limit lease to renew from Redis, a token not yet verified, a WebSocket upgrade or
/// a method the router treats specially send it to the router instead, which answers the
/// same bytes. What ``GatewayMiddleware`` and ``AdminCertificateMiddleware`` do for these
/// routes happens here too, in the same order: request id, per-client rate limit, NUL
/// refusal, the admin certificate rule (system routes go to the router when it is on),
/// then metrics and the log line for server errors.
final class DirectRoutes: Sendable {
    let state: SystemState
    let portalRoutes: PortalRouteHandler
    let rateLimiter: RateLimiter
    let perClient: TokenBucketConfig?
    /// `SystemRoutes.bodyLimit`, for the echo route.
    let echoBodyLimit: Int
    /// False with `[admin] require_client_certificate`: `/v1/system/*` is guarded then.
    let systemRoutesDirect: Bool
    let logger: Logger
    /// The gateway's request counters and request ids (shared with ``GatewayMiddleware``).
    let metrics: RequestMetrics
    let requestIDs: RequestIDs
    /// `[kernel] trusted_proxies`: whose `X-Forwarded-For` names the client.
    let trustedProxies: TrustedProxies
    private let dates = HTTPDateHeader()

    init(
        state: SystemState, portalRoutes: PortalRouteHandler, rateLimiter: RateLimiter, perClient: TokenBucketConfig?,
        echoBodyLimit: Int, systemRoutesDirect: Bool, logger: Logger, metrics: RequestMetrics, requestIDs: RequestIDs,
        trustedProxies: TrustedProxies = .none
    ) {
        self.trustedProxies = trustedProxies
        self.metrics = metrics
        self.requestIDs = requestIDs
        self.state = state
        self.portalRoutes = portalRoutes
        self.rateLimiter = rateLimiter
        self.perClient = perClient
        self.echoBodyLimit = echoBodyLimit
        self.systemRoutesDirect = systemRoutesDirect
        self.logger = logger
    }

    /// Which route a request took.
    enum Route: Sendable {
        case status
        case echo
        /// The resolved instance (holding a use until the answer) and the credential.
        case portal(PortalRouteHandler.Target, credential: [UInt8], certificate: String, query: String, remote: String)
        /// Answered before its body: rate limited, a NUL in the URL, no such portal.
        case refused(GatewayError)
    }

    /// A request this path took.
    struct Accepted: Sendable {
        let head: HTTPRequest
        let route: Route
        let requestID: String
        let started: UInt64
        /// Largest body this route reads (413 beyond).
        let bodyLimit: Int
    }

    /// The headers the status and echo routes start from (built once: a literal costs 900 instructions).
    private static let jsonHeaders: HTTPFields = [.contentType: "application/json"]
    private static let textHeaders: HTTPFields = [.contentType: "text/plain"]

    /// The start of every portal route.
    private static let portalPath = Array("/p/".utf8)

    /// Methods the router serves `/p/**` with (HEAD goes to the router: it drops the body).
    private static let portalMethods: Set<HTTPRequest.Method> = [.get, .post, .put, .patch, .delete, .options]

    /// Takes the request when this path serves it; nil hands it to the router. Called on
    /// the connection's event loop with its pipeline (for the client certificate).
    func accept(_ head: HTTPRequest, pipeline: ChannelPipeline, remoteAddress: () -> String) -> Accepted? {
        guard let target = head.path, target.utf8.first == UInt8(ascii: "/"),
            head.headerFields[.upgrade] == nil, head.headerFields[.expect] == nil
        else { return nil }
        let path: Substring
        let query: Substring
        if let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = target[..<mark]
            query = target[target.index(after: mark)...]
        } else {
            path = target[...]
            query = ""
        }
        if path.utf8.contains(UInt8(ascii: "#")) { return nil }
        enum Kind { case status, echo, portal }
        let kind: Kind
        if path == "/v1/system/status", head.method == .get, systemRoutesDirect {
            kind = .status
        } else if path == "/v1/system/echo", head.method == .get || head.method == .post, systemRoutesDirect {
            kind = .echo
        } else if path.utf8.starts(with: Self.portalPath), Self.portalMethods.contains(head.method) {
            kind = .portal
        } else {
            return nil
        }
        let started = DispatchTime.now().uptimeNanoseconds
        // Formatting the address costs 2,800 instructions: only when it is used.
        var remote = ""
        if perClient != nil || kind == .portal {
            remote = remoteAddress()
            if !trustedProxies.isEmpty {
                remote = trustedProxies.client(peer: remote, forwardedFor: head.headerFields[values: GatewayMiddleware.forwardedForField])
            }
        }
        // GatewayMiddleware's order: request id, per-client limit, NUL refusal, the route.
        var refusal: GatewayError?
        if let bucket = perClient {
            guard let decision = rateLimiter.takeWithoutWaiting(key: "client:" + remote, bucket: bucket) else { return nil }
            if !decision.allowed { refusal = GatewayMiddleware.tooManyRequests(decision, scope: "your address") }
        }
        if refusal == nil {
            do { try GatewayMiddleware.refuseNUL(in: target) } catch let error as GatewayError { refusal = error } catch {}
        }
        let route: Route
        var bodyLimit = 0
        if let refusal {
            route = .refused(refusal)
        } else {
            switch kind {
            case .status:
                route = .status
            case .echo:
                route = .echo
                bodyLimit = echoBodyLimit
            case .portal:
                let resolved: PortalRouteHandler.Target
                do {
                    resolved = try portalRoutes.resolve(path: String(path))
                } catch let error as GatewayError {
                    return Accepted(
                        head: head, route: .refused(error), requestID: GatewayMiddleware.requestID(from: head.headerFields, ids: requestIDs),
                        started: started, bodyLimit: 0)
                } catch {
                    return nil
                }
                // Streaming prefixes (ABI 1.7) read their bodies as they come: the router's path,
                // unless the body is small and of a declared length (read whole here, then
                // handed to the plugin's reads from memory; the answer may still stream).
                if resolved.instance.plugin.streamingPrefixes.contains(resolved.prefix), !Self.smallDeclaredBody(head.headerFields) {
                    resolved.instance.release()
                    return nil
                }
                if let bucket = resolved.rateLimit {
                    let name = resolved.instance.portal.name
                    guard let decision = rateLimiter.takeWithoutWaiting(key: "portal:" + name, bucket: bucket) else {
                        resolved.instance.release()
                        return nil
                    }
                    if !decision.allowed {
                        resolved.instance.release()
                        return Accepted(
                            head: head, route: .refused(GatewayMiddleware.tooManyRequests(decision, scope: "portal \"\(name)\"")),
                            requestID: GatewayMiddleware.requestID(from: head.headerFields, ids: requestIDs), started: started, bodyLimit: 0)
                    }
                }
                var certificate = ""
                // Plain listeners have no TLS handler to ask.
                if portalRoutes.usesTLS, let peer = (try? pipeline.syncOperations.nioSSL_peerCertificate()) ?? nil {
                    certificate = ClientCertificate.subject(of: peer)
                }
                guard let credential = portalRoutes.credentials.knownCredentialJSON(for: head.headerFields, portal: resolved.instance.portal.name) else {
                    resolved.instance.release()
                    return nil
                }
                route = .portal(resolved, credential: credential, certificate: certificate, query: String(query), remote: remote)
                bodyLimit = portalRoutes.bodyLimit
            }
        }
        return Accepted(
            head: head, route: route, requestID: GatewayMiddleware.requestID(from: head.headerFields, ids: requestIDs), started: started,
            bodyLimit: bodyLimit)
    }

    /// Bodies on streaming prefixes up to this declared size are read whole on the direct path.
    static let streamedDirectBodyBytes = 64 * 1024

    /// No `Transfer-Encoding`, and no `Content-Length` or one of at most ``streamedDirectBodyBytes``.
    static func smallDeclaredBody(_ fields: HTTPFields) -> Bool {
        guard fields[.transferEncoding] == nil else { return false }
        let lengths = fields[values: .contentLength]
        guard let length = lengths.first else { return true }
        guard lengths.count == 1, let declared = Int(length), declared >= 0 else { return false }
        return declared <= streamedDirectBodyBytes
    }

    /// What the direct path answers: a whole response, or (a plugin that streams its answer
    /// on a streaming prefix) a head and the body's events.
    enum Answer: Sendable {
        case whole((HTTPResponse, ByteBuffer))
        case streamed(HTTPResponse, StreamedBody)
    }

    /// A streamed answer's body on its way to the connection.
    struct StreamedBody: Sendable {
        /// The plugin's chunks, then its end (or abort).
        let events: AsyncStream<StreamedResponseEvent>
        /// Counts a chunk's bytes for the portal's traffic.
        let sent: @Sendable (Int) -> Void
        /// The response is over (`clientGone`: the client left first; the plugin is told to stop).
        let finished: @Sendable (_ clientGone: Bool) -> Void
    }

    /// The answer to a request refused before its body was read.
    func refusal(_ accepted: Accepted) -> (HTTPResponse, ByteBuffer) {
        guard case .refused(let error) = accepted.route else {
            return error(GatewayError(status: 500, code: "internal_error", message: "internal error"), for: accepted)
        }
        return self.error(error, for: accepted)
    }

    /// The answer to a request whose body went past its route's limit.
    func bodyTooLarge(_ accepted: Accepted) -> (HTTPResponse, ByteBuffer) {
        if case .portal(let target, _, _, _, _) = accepted.route { target.instance.release() }
        let limit = if case .echo = accepted.route { portalRoutes.bodyLimit } else { accepted.bodyLimit }
        return error(
            GatewayError(
                status: 413, code: "body_too_large", message: "request body is larger than the limit of \(limit) bytes",
                hint: "raise [kernel] body_limit_bytes or send less"), for: accepted)
    }

    /// Gives back what ``accept`` took when the request ends unanswered (the connection closed).
    func abandon(_ accepted: Accepted) {
        if case .portal(let target, _, _, _, _) = accepted.route { target.instance.release() }
    }

    /// Answers a request whose body has been read, now or (a plugin answering later) from
    /// another thread; `done` runs exactly once.
    func answer(_ accepted: Accepted, body: ByteBuffer, channel: any Channel, done: @escaping @Sendable (Answer) -> Void) {
        switch accepted.route {
        case .refused(let error):
            done(.whole(self.error(error, for: accepted)))
        case .status:
            let json = state.statusJSON
            var buffer = channel.allocator.buffer(capacity: json.count)
            buffer.writeBytes(json)
            done(.whole(finish(accepted, status: .ok, headers: Self.jsonHeaders, body: buffer)))
        case .echo:
            let text = body.readableBytes == 0 ? ByteBuffer(string: "echo") : body
            done(.whole(finish(accepted, status: .ok, headers: Self.textHeaders, body: text)))
        case .portal(let target, let credential, let certificate, let query, let remote):
            let instance = target.instance
            // A streaming prefix's plugin reads the body (whole already) through request_body_read.
            let streamed = instance.plugin.streamingPrefixes.contains(target.prefix)
            var fields = HostRequestFields(
                method: accepted.head.method, query: query, headers: accepted.head.headerFields, subpath: target.subpath, prefix: target.prefix,
                portal: instance.portal.name, requestID: accepted.requestID, remote: remote,
                certificate: certificate, credential: credential, body: streamed ? ByteBuffer() : body)
            fields.bodyStreamed = streamed
            if streamed { fields.wholeBody = body }
            let pending = portalRoutes.plugins.context.pending
            let streams = portalRoutes.plugins.context.streams
            let plugin = instance.plugin.name
            let bodyLimit = portalRoutes.bodyLimit
            // As on the router's path: a client that leaves, or a timeout, cancels the plugin's work.
            let abandonment: ((UInt64) -> PendingRequests.Abandonment)? =
                instance.acceptsCancellation
                ? { token in PendingRequests.Abandonment(channel: channel, cancel: { instance.cancelRequest(token) }) } : nil
            let timeout = streamed ? PortalRouteHandler.streamedTimeout : portalRoutes.requestTimeout
            let started = pending.start(plugin: plugin, timeout: timeout, abandonment: abandonment) { token in
                if streamed { streams.register(StreamedExchange(token: token, wholeBody: body, bodyLimit: bodyLimit)) }
                fields.withHostRequest { hostRequest in
                    instance.plugin.descriptor.pointee.handle_request!(instance.pointer, token, hostRequest)
                }
            }
            let inbound = body.readableBytes
            let token = started.token
            @Sendable func answered(_ response: PluginResponse) {
                instance.traffic?.record(status: response.status, bytesIn: inbound, bytesOut: response.body.count)
                guard streamed else {
                    instance.release()
                    return done(.whole(pluginResponse(response, for: accepted, allocator: channel.allocator)))
                }
                guard let events = response.stream else {
                    streams.remove(token)
                    instance.release()
                    return done(.whole(pluginResponse(response, for: accepted, allocator: channel.allocator)))
                }
                let traffic = instance.traffic
                let cancels = instance.acceptsCancellation
                let body = StreamedBody(
                    events: events, sent: { traffic?.addBytesOut($0) },
                    finished: { clientGone in
                        if clientGone {
                            // Later writes fail, and the plugin stops.
                            streams.exchange(token)?.close()
                            if cancels { instance.cancelRequest(token) }
                        }
                        streams.remove(token)
                        instance.release()
                    })
                done(.streamed(streamedHead(response, for: accepted), body))
            }
            if let early = started.early { return answered(early) }
            // No task waits: the plugin's respond hands the answer on (to the connection's loop).
            pending.answer(token, plugin: plugin, deadline: started.deadline) { answered($0) }
        }
    }

    /// The head of a streamed answer: the plugin's headers without a length (the body is
    /// sent chunked), then what ``finish`` adds to every answer.
    private func streamedHead(_ response: PluginResponse, for accepted: Accepted) -> HTTPResponse {
        head(accepted, status: .init(code: response.status), headers: Self.fields(of: response, streamed: true), bodyLength: nil, fromPlugin: true)
    }

    /// A plugin's headers as fields (invalid names dropped; for a streamed body also its
    /// `content-length` and `transfer-encoding`, which are the connection's business).
    private static func fields(of response: PluginResponse, streamed: Bool) -> HTTPFields {
        var headers = HTTPFields()
        headers.reserveCapacity(response.headers.count + 3)
        for (name, value) in response.headers {
            guard let field = HTTPField.Name(name), !streamed || (field != .contentLength && field != .transferEncoding) else { continue }
            headers.append(HTTPField(name: field, value: value))
        }
        return headers
    }

    private func pluginResponse(_ response: PluginResponse, for accepted: Accepted, allocator: ByteBufferAllocator) -> (HTTPResponse, ByteBuffer) {
        var body = allocator.buffer(capacity: response.body.count)
        body.writeBytes(response.body)
        return finish(accepted, status: .init(code: response.status), headers: Self.fields(of: response, streamed: false), body: body, fromPlugin: true)
    }

    private func error(_ error: GatewayError, for accepted: Accepted) -> (HTTPResponse, ByteBuffer) {
        var headers: HTTPFields = [.contentType: "application/json"]
        for (name, value) in error.extraHeaders {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return finish(accepted, status: error.status, headers: headers, body: ByteBuffer(bytes: error.jsonBytes))
    }

    /// What Hummingbird's `Response` init, ``GatewayMiddleware`` and the application add to
    /// every response: content-length, the request id, metrics, the error log line, `Date`.
    private func finish(
        _ accepted: Accepted, status: HTTPResponse.Status, headers: HTTPFields, body: ByteBuffer, fromPlugin: Bool = false
    )
        -> (HTTPResponse, ByteBuffer)
    {
        (head(accepted, status: status, headers: headers, bodyLength: body.readableBytes, fromPlugin: fromPlugin), body)
    }

    /// ``finish``'s head; `bodyLength` nil: a streamed body, sent without a length.
    private func head(_ accepted: Accepted, status: HTTPResponse.Status, headers: HTTPFields, bodyLength: Int?, fromPlugin: Bool) -> HTTPResponse {
        var headers = headers
        headers.reserveCapacity(headers.count + 3)
        // Appending where the name is surely absent is cheaper than the subscript's replace.
        if let bodyLength, !headers.contains(.contentLength) { headers.append(HTTPField(name: .contentLength, value: String(bodyLength))) }
        if fromPlugin, headers.contains(GatewayMiddleware.requestIDField) {
            headers[GatewayMiddleware.requestIDField] = accepted.requestID
        } else {
            headers.append(HTTPField(name: GatewayMiddleware.requestIDField, value: accepted.requestID))
        }
        metrics.record(status: status.code, nanoseconds: Int64(DispatchTime.now().uptimeNanoseconds - accepted.started))
        if status.code >= 500 {
            var logger = logger
            logger[metadataKey: "request_id"] = .string(accepted.requestID)
            let path = (accepted.head.path ?? "/").split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            logger.error("request failed", metadata: ["method": "\(accepted.head.method)", "path": "\(path)", "status": "\(status.code)"])
        }
        if fromPlugin, headers.contains(.date) {
            headers[.date] = dates.current
        } else {
            headers.append(HTTPField(name: .date, value: dates.current))
        }
        return HTTPResponse(status: status, headerFields: headers)
    }
}
