import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MeltyABIBytes
import MeltyPluginABI
import NIOCore
import NIOSSL
import NIOWebSocket

/// Routes `/p/<portal>/<prefix>/...` to the portal's instance of the plugin owning `prefix`,
/// for HTTP requests and WebSocket upgrades alike.
struct PortalRouteHandler: Sendable {
    let plugins: PluginHost
    let portals: PortalRegistry
    let rateLimiter: RateLimiter
    let requestTimeout: Double
    /// Per-client limit, applied here to WebSocket connections (HTTP requests take theirs in the middleware).
    let perClient: TokenBucketConfig?
    /// Turns the caller's token into the `credential_json` plugins receive.
    let credentials: CredentialResolver
    /// This kernel's `body_limit_bytes`.
    var bodyLimit: Int = KernelRequestContext.defaultBodyLimit
    /// Whether any of this kernel's listeners speaks TLS (otherwise no request carries a client certificate).
    var usesTLS = false

    /// A resolved target: the instance (with a use taken) and the path below the prefix.
    struct Target: Sendable {
        let instance: PluginInstance
        let subpath: String
        let prefix: String
        let rateLimit: TokenBucketConfig?
    }

    /// Finds the instance for a request path, or throws the 404 that explains why not.
    func resolve(_ request: Request) throws -> Target {
        try resolve(path: request.uri.path)
    }

    /// Finds the instance for the path of a request (without the query).
    func resolve(path: String) throws -> Target {
        // "", "p", portal, rest: `split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)`
        // by index (the generic split cost 12,000 instructions a request). ASCII paths are
        // cut by byte; others by Character, as split did (a "/" with a combining mark is no separator).
        let ascii = path.utf8.allSatisfy { $0 < 0x80 }
        let afterFirst = Self.afterSlash(path[...], ascii: ascii)
        let afterP = afterFirst.flatMap { Self.afterSlash($0, ascii: ascii) }
        guard let afterFirst, let afterP, afterFirst[..<afterFirst.index(before: afterP.startIndex)] == "p" else {
            throw GatewayError(status: 404, code: "route_not_found", message: "no route for \(path)")
        }
        let afterPortal = Self.afterSlash(afterP, ascii: ascii)
        let portalName = String(afterPortal.map { afterP[..<afterP.index(before: $0.startIndex)] } ?? afterP)
        let rest = afterPortal ?? ""
        // The first non-empty segment of rest, and everything after rest's first "/".
        let prefix: String
        if ascii {
            let utf8 = rest.utf8
            let start = utf8.firstIndex(where: { $0 != UInt8(ascii: "/") }) ?? utf8.endIndex
            let end = utf8[start...].firstIndex(of: UInt8(ascii: "/")) ?? utf8.endIndex
            prefix = String(rest[start..<end])
        } else {
            prefix = String(rest.drop(while: { $0 == "/" }).prefix(while: { $0 != "/" }))
        }
        let subpath = "/" + (Self.afterSlash(rest, ascii: ascii) ?? "")
        guard let portal = portals.portal(portalName) else {
            throw GatewayError(
                status: 404, code: "portal_not_found", message: "portal \"\(portalName)\" does not exist",
                hint: "create it with `meltybase portal create \(portalName)` or declare [portals.\(portalName)] in plugins.toml")
        }
        // A hard quota reached this month (docs/hub.md): one relaxed load when it is not.
        if let refusal = portal.handle.usage?.refusal() { throw refusal }
        guard !prefix.isEmpty, let plugin = plugins.plugin(prefix: prefix) else {
            throw GatewayError(
                status: 404, code: "plugin_not_found", message: "no loaded plugin serves the prefix \"\(prefix)\"",
                hint: "`meltybase plugins list` shows the loaded plugins and their prefixes")
        }
        guard let instance = portal.instances.withLockedValue({ $0[plugin.name] }), instance.acquire() else {
            throw GatewayError(
                status: 404, code: "plugin_not_enabled", message: "plugin \"\(plugin.name)\" is not enabled for portal \"\(portalName)\"",
                hint: "enable it with `meltybase portal enable \(portalName) \(plugin.name)` or add it to [portals.\(portalName)] plugins")
        }
        return Target(instance: instance, subpath: subpath, prefix: prefix, rateLimit: portal.rateLimit)
    }

    /// What follows the first "/" of `text`, or nil without one.
    private static func afterSlash(_ text: Substring, ascii: Bool) -> Substring? {
        if ascii {
            guard let slash = text.utf8.firstIndex(of: UInt8(ascii: "/")) else { return nil }
            return text[text.utf8.index(after: slash)...]
        }
        guard let slash = text.firstIndex(of: "/") else { return nil }
        return text[text.index(after: slash)...]
    }

    /// Takes a token from the portal's bucket when it has one.
    func limitPortal(_ target: Target) async throws {
        guard let bucket = target.rateLimit else { return }
        let name = target.instance.portal.name
        let decision = await rateLimiter.take(key: "portal:" + name, bucket: bucket)
        if !decision.allowed { throw GatewayMiddleware.tooManyRequests(decision, scope: "portal \"\(name)\"") }
    }

    /// Handles one HTTP request through the plugin.
    func handle(_ request: Request, context: KernelRequestContext) async throws -> Response {
        let target = try resolve(request)
        if target.instance.plugin.streamingPrefixes.contains(target.prefix) {
            return try await handleStreamed(request, context: context, target: target)
        }
        defer { target.instance.release() }
        try await limitPortal(target)
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: bodyLimit)
        } catch {
            throw GatewayError(
                status: 413, code: "body_too_large", message: "request body is larger than the limit of \(bodyLimit) bytes",
                hint: "raise [kernel] body_limit_bytes or send less")
        }
        let certificate = await clientCertificateSubject(context)
        let credential = try await credentials.credentialJSON(
            for: request.headers, portal: target.instance.portal.name,
            clientCertificatePresented: !certificate.isEmpty)
        let fields = HostRequestFields(
            request: request, subpath: target.subpath, prefix: target.prefix, portal: target.instance.portal.name,
            requestID: context.requestID, remote: context.clientAddress, certificate: certificate,
            credential: credential, body: body)
        let instance = target.instance
        let channel = context.channel
        let abandonment: ((UInt64) -> PendingRequests.Abandonment)? =
            instance.acceptsCancellation
            ? { token in PendingRequests.Abandonment(channel: channel, cancel: { instance.cancelRequest(token) }) } : nil
        let response = await plugins.context.pending.run(
            plugin: instance.plugin.name, timeout: requestTimeout,
            abandonment: abandonment
        ) { token in
            fields.withHostRequest { hostRequest in
                instance.plugin.descriptor.pointee.handle_request!(instance.pointer, token, hostRequest)
            }
        }
        instance.traffic?.record(status: response.status, bytesIn: body.readableBytes, bytesOut: response.body.count)
        var headers = HTTPFields()
        for (name, value) in response.headers {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        return Response(status: .init(code: response.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: response.body)))
    }

    /// Handles a request on a streaming prefix (ABI 1.7): the plugin pulls the body with
    /// `request_body_read` and may answer with `respond_start`/`respond_write`/`respond_end`,
    /// whose chunks go to the client as they come. The instance stays in use until the
    /// response body ends.
    private func handleStreamed(_ request: Request, context: KernelRequestContext, target: Target) async throws -> Response {
        let instance = target.instance
        var handedOver = false
        defer { if !handedOver { instance.release() } }
        try await limitPortal(target)
        let certificate = await clientCertificateSubject(context)
        let credential = try await credentials.credentialJSON(
            for: request.headers, portal: instance.portal.name, clientCertificatePresented: !certificate.isEmpty)
        let fields = HostRequestFields(
            request: request, subpath: target.subpath, prefix: target.prefix, portal: instance.portal.name,
            requestID: context.requestID, remote: context.clientAddress, certificate: certificate,
            credential: credential, body: ByteBuffer(), bodyStreamed: true)
        let channel = context.channel
        let streams = plugins.context.streams
        let abandonment: ((UInt64) -> PendingRequests.Abandonment)? =
            instance.acceptsCancellation
            ? { token in PendingRequests.Abandonment(channel: channel, cancel: { instance.cancelRequest(token) }) } : nil
        var dispatched: UInt64 = 0
        let body = request.body
        let limit = bodyLimit
        let response = await plugins.context.pending.run(
            plugin: instance.plugin.name, timeout: Self.streamedTimeout, abandonment: abandonment
        ) { token in
            dispatched = token
            streams.register(StreamedExchange(token: token, body: body, bodyLimit: limit))
            fields.withHostRequest { hostRequest in
                instance.plugin.descriptor.pointee.handle_request!(instance.pointer, token, hostRequest)
            }
        }
        let token = dispatched
        let traffic = instance.traffic
        traffic?.record(status: response.status, bytesIn: 0, bytesOut: response.body.count)
        var headers = HTTPFields()
        for (name, value) in response.headers {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        guard let events = response.stream else {
            traffic?.addBytesIn(streams.exchange(token)?.bytesRead ?? 0)
            streams.remove(token)
            return Response(status: .init(code: response.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: response.body)))
        }
        handedOver = true
        let cancel = instance.acceptsCancellation
        return Response(
            status: .init(code: response.status), headers: headers,
            body: ResponseBody { writer in
                defer {
                    traffic?.addBytesIn(streams.exchange(token)?.bytesRead ?? 0)
                    streams.remove(token)
                    instance.release()
                }
                let ending = await events.deliver(
                    write: { buffer in
                        traffic?.addBytesOut(buffer.readableBytes)
                        try await writer.write(buffer)
                    },
                    clientGone: {
                        // Later writes fail, and the plugin stops.
                        streams.exchange(token)?.close()
                        if cancel { instance.cancelRequest(token) }
                    })
                switch ending {
                case .ended: try await writer.finish(nil)
                case .aborted: throw StreamedResponseAborted(plugin: instance.plugin.name)
                case .clientGone(let failure): throw failure
                }
            })
    }

    /// How long a streaming request may wait for its answer to start; the plugin bounds its
    /// own time (ABI 1.7: request_timeout_seconds does not apply).
    static let streamedTimeout: Double = 3600

    /// Opens an upgraded connection on `/p/<portal>/<prefix>/...` with its plugin: checks
    /// the portal, the plugin and the rate limits (a refusal closes the connection with
    /// 1008, or 1013 when rate limited, and the reason, because a failed upgrade could only
    /// be a bare 400), registers it in the hub and asks the plugin (`ws_open`). From then on
    /// the connection's handler serves it in its pipeline (``WebSocketConnectionHandler``):
    /// this returns, and the socket keeps no task.
    func openWebSocket(_ upgrade: WebSocketUpgrade) async {
        let context = upgrade.context
        let target: Target
        do {
            if let bucket = perClient {
                let decision = await rateLimiter.take(key: "client:" + context.clientAddress, bucket: bucket)
                if !decision.allowed { throw GatewayMiddleware.tooManyRequests(decision, scope: "your address") }
            }
            target = try resolve(upgrade.request)
        } catch {
            upgrade.refuse(error)
            return
        }
        var opened = false
        defer { if !opened { target.instance.release() } }
        do {
            guard target.instance.plugin.acceptsWebSockets else {
                throw GatewayError(status: 404, code: "websocket_not_supported", message: "plugin \"\(target.instance.plugin.name)\" does not accept WebSocket connections")
            }
            try await limitPortal(target)
        } catch {
            upgrade.refuse(error)
            return
        }
        let instance = target.instance
        let channel = upgrade.channel
        let hub = plugins.context.webSockets
        // Frames go straight into the channel on its event loop (WebSocketHub); a close
        // runs the handler's closing handshake.
        let handler = upgrade.handler
        let transport = WebSocketHub.Transport(channel: channel, writer: upgrade.writer) { code, reason in
            handler.value.sendClose(code: code, reason: reason)
        }
        let connection = hub.open(abort: { channel.close(promise: nil) }, transport: transport)
        defer { if !opened { hub.remove(connection) } }
        let certificate = await clientCertificateSubject(context)
        let credential: [UInt8]
        do {
            credential = try await credentials.credentialJSON(
                for: upgrade.request.headers, portal: instance.portal.name, query: upgrade.request.uri.query,
                clientCertificatePresented: !certificate.isEmpty)
        } catch let error as GatewayError {
            upgrade.refuse(code: 1008, reason: error.message)
            return
        } catch {
            upgrade.refuse(code: 1011, reason: "the gateway could not check the credential")
            return
        }
        let fields = HostRequestFields(
            request: upgrade.request, subpath: target.subpath, prefix: target.prefix, portal: instance.portal.name,
            requestID: context.requestID, remote: context.clientAddress,
            certificate: certificate, credential: credential, body: ByteBuffer())
        let message = HostErrorBuffer()
        let descriptor = instance.plugin.descriptor.pointee
        let status = fields.withHostRequest { descriptor.ws_open!(instance.pointer, connection, $0, message.buffer) }
        guard status == MB_OK else {
            upgrade.refuse(code: 1008, reason: message.text.isEmpty ? "refused by plugin \(instance.plugin.name)" : message.text)
            return
        }
        opened = true
        upgrade.activate(WebSocketConnectionHandler.Session(instance: instance, connection: connection, hub: hub))
    }

    /// A close reason within the 123 bytes a close frame allows.
    static func closeReason(_ text: String) -> String {
        var bytes = Array(text.utf8.prefix(123))
        while String(bytes: bytes, encoding: .utf8) == nil { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Subject of the verified client certificate, or "" without mTLS.
    private func clientCertificateSubject(_ context: KernelRequestContext) async -> String {
        // Asking the pipeline for a TLS handler costs a hop to the event loop; plain
        // listeners have none.
        guard usesTLS else { return "" }
        guard let certificate = try? await context.channel.nioSSL_peerCertificate().get() else { return "" }
        return ClientCertificate.subject(of: certificate)
    }
}

/// The request fields handed to a plugin, laid out once so that `mb_host_request` can
/// point into them for the duration of one call.
struct HostRequestFields {
    let method: String
    let path: String
    let query: String
    /// Header names (canonical) and values back to back, and their lengths in that order.
    let headerBytes: [UInt8]
    let headerLengths: [Int]
    let body: ByteBuffer
    let portal: String
    let requestID: String
    let remote: String
    let certificate: String
    let prefix: String
    let credential: [UInt8]
    /// The body is read through `request_body_read` (ABI 1.7), not in `body`.
    var bodyStreamed = false
    /// A streamed body the gateway already read whole (ABI 1.9 `whole_body`); nil: still to be read.
    var wholeBody: ByteBuffer?

    init(
        request: Request, subpath: String, prefix: String, portal: String, requestID: String, remote: String, certificate: String,
        credential: [UInt8], body: ByteBuffer, bodyStreamed: Bool = false
    ) {
        self.init(
            method: request.method, query: request.uri.query ?? "", headers: request.headers, subpath: subpath, prefix: prefix,
            portal: portal, requestID: requestID, remote: remote, certificate: certificate, credential: credential, body: body)
        self.bodyStreamed = bodyStreamed
    }

    init(
        method: HTTPRequest.Method, query: String, headers: HTTPFields, subpath: String, prefix: String, portal: String, requestID: String,
        remote: String, certificate: String, credential: [UInt8], body: ByteBuffer
    ) {
        self.method = method.rawValue
        path = subpath
        self.query = query
        // One buffer for all headers instead of an array per name and value.
        var bytes: [UInt8] = []
        var lengths: [Int] = []
        lengths.reserveCapacity(headers.count * 2)
        for field in headers {
            let name = field.name.canonicalName.utf8
            let value = field.value.utf8
            bytes.append(contentsOf: name)
            bytes.append(contentsOf: value)
            lengths.append(name.count)
            lengths.append(value.count)
        }
        headerBytes = bytes
        headerLengths = lengths
        self.body = body
        self.portal = portal
        self.requestID = requestID
        self.remote = remote
        self.certificate = certificate
        self.prefix = prefix
        self.credential = credential
    }

    /// `whole_body`: the bytes of ``wholeBody`` (non-NULL even when empty), or NULL.
    private func withWholeBody<R>(_ call: (mb_host_bytes) -> R) -> R {
        guard let wholeBody else { return call(mb_host_bytes(data: nil, len: 0)) }
        guard wholeBody.readableBytes > 0 else {
            return withUnsafePointer(to: Self.emptyByte) { call(mb_host_bytes(data: $0, len: 0)) }
        }
        return wholeBody.withUnsafeReadableBytes { raw in
            call(mb_host_bytes(data: raw.baseAddress?.assumingMemoryBound(to: UInt8.self), len: raw.count))
        }
    }

    /// Where an empty `whole_body` points (non-NULL says "complete").
    private static let emptyByte: UInt8 = 0

    /// Calls `body` with an `mb_host_request` valid only during the call. The strings lend
    /// their own UTF-8 storage (no copies).
    func withHostRequest<R>(_ call: (UnsafePointer<mb_host_request>) -> R) -> R {
        func bytes(_ buffer: UnsafeBufferPointer<UInt8>) -> mb_host_bytes { mb_host_bytes(data: buffer.baseAddress, len: buffer.count) }
        var method = method, path = path, query = query, portal = portal
        var requestID = requestID, remote = remote, certificate = certificate, prefix = prefix
        return method.withUTF8 { method in
            path.withUTF8 { path in
                query.withUTF8 { query in
                    portal.withUTF8 { portal in
                        requestID.withUTF8 { requestID in
                            remote.withUTF8 { remote in
                                certificate.withUTF8 { certificate in
                                    prefix.withUTF8 { prefix in
                                        credential.withUnsafeBufferPointer { credential in
                                            body.withUnsafeReadableBytes { rawBody in
                                                withWholeBody { wholeBody in
                                                    withHeaders { headerPointer, headerCount in
                                                        var request = mb_host_request(
                                                            struct_size: MemoryLayout<mb_host_request>.size,
                                                            method: bytes(method), path: bytes(path), query: bytes(query),
                                                            headers: headerPointer, header_count: headerCount,
                                                            body: mb_host_bytes(data: rawBody.baseAddress?.assumingMemoryBound(to: UInt8.self), len: rawBody.count),
                                                            portal_name: bytes(portal), request_id: bytes(requestID), remote_address: bytes(remote),
                                                            client_certificate_subject: bytes(certificate),
                                                            route_prefix: bytes(prefix), credential_json: bytes(credential),
                                                            body_streamed: bodyStreamed ? 1 : 0, whole_body: wholeBody)
                                                        return call(&request)
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The headers as `mb_host_header`s pointing into ``headerBytes``, on the stack.
    private func withHeaders<R>(_ call: (UnsafePointer<mb_host_header>?, Int) -> R) -> R {
        let count = headerLengths.count / 2
        return headerBytes.withUnsafeBufferPointer { storage in
            withUnsafeTemporaryAllocation(of: mb_host_header.self, capacity: max(count, 1)) { headers in
                var offset = 0
                for index in 0..<count {
                    let nameLength = headerLengths[2 * index]
                    let valueLength = headerLengths[2 * index + 1]
                    let base = storage.baseAddress
                    headers.initializeElement(
                        at: index,
                        to: mb_host_header(
                            name: mb_host_bytes(data: base.map { $0 + offset }, len: nameLength),
                            value: mb_host_bytes(data: base.map { $0 + offset + nameLength }, len: valueLength)))
                    offset += nameLength + valueLength
                }
                defer { UnsafeMutableBufferPointer(rebasing: headers[..<count]).deinitialize() }
                return call(UnsafePointer(headers.baseAddress), count)
            }
        }
    }
}

/// A streamed response the plugin aborted (or left unfinished): the connection closes
/// without completing the body.
struct StreamedResponseAborted: Error, CustomStringConvertible {
    let plugin: String
    var description: String { "plugin \"\(plugin)\" aborted its streamed response" }
}
