import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import MeltyPluginABI
import NIOCore
import NIOSSL

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
    struct Target {
        let instance: PluginInstance
        let subpath: String
        let prefix: String
        let rateLimit: TokenBucketConfig?
    }

    /// Finds the instance for a request path, or throws the 404 that explains why not.
    func resolve(_ request: Request) throws -> Target {
        let parts = request.uri.path.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
        // "", "p", portal, rest
        guard parts.count >= 3, parts[1] == "p" else { throw GatewayError(status: 404, code: "route_not_found", message: "no route for \(request.uri.path)") }
        let portalName = String(parts[2])
        let rest = parts.count > 3 ? parts[3] : ""
        let prefix = String(rest.split(separator: "/", maxSplits: 1).first ?? "")
        let subpath = "/" + (rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).dropFirst().first ?? "")
        guard let portal = portals.portal(portalName) else {
            throw GatewayError(status: 404, code: "portal_not_found", message: "portal \"\(portalName)\" does not exist",
                               hint: "create it with `meltybase portal create \(portalName)` or declare [portals.\(portalName)] in plugins.toml")
        }
        guard !prefix.isEmpty, let plugin = plugins.plugin(prefix: prefix) else {
            throw GatewayError(status: 404, code: "plugin_not_found", message: "no loaded plugin serves the prefix \"\(prefix)\"",
                               hint: "`meltybase plugins list` shows the loaded plugins and their prefixes")
        }
        guard let instance = portal.instances.withLockedValue({ $0[plugin.name] }), instance.acquire() else {
            throw GatewayError(status: 404, code: "plugin_not_enabled", message: "plugin \"\(plugin.name)\" is not enabled for portal \"\(portalName)\"",
                               hint: "enable it with `meltybase portal enable \(portalName) \(plugin.name)` or add it to [portals.\(portalName)] plugins")
        }
        return Target(instance: instance, subpath: subpath, prefix: prefix, rateLimit: portal.rateLimit)
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
        defer { target.instance.release() }
        try await limitPortal(target)
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: bodyLimit)
        } catch {
            throw GatewayError(status: 413, code: "body_too_large", message: "request body is larger than the limit of \(bodyLimit) bytes",
                               hint: "raise [kernel] body_limit_bytes or send less")
        }
        let certificate = await clientCertificateSubject(context)
        let credential = try await credentials.credentialJSON(for: request.headers, portal: target.instance.portal.name,
                                                              clientCertificatePresented: !certificate.isEmpty)
        let fields = HostRequestFields(request: request, subpath: target.subpath, prefix: target.prefix, portal: target.instance.portal.name,
                                       requestID: context.requestID, remote: context.clientAddress, certificate: certificate,
                                       credential: credential, body: body)
        let instance = target.instance
        let channel = context.channel
        let abandonment: ((UInt64) -> PendingRequests.Abandonment)? = instance.acceptsCancellation
            ? { token in PendingRequests.Abandonment(channel: channel, cancel: { instance.cancelRequest(token) }) } : nil
        let response = await plugins.context.pending.run(plugin: instance.plugin.name, timeout: requestTimeout,
                                                         abandonment: abandonment) { token in
            fields.withHostRequest { hostRequest in
                instance.plugin.descriptor.pointee.handle_request!(instance.pointer, token, hostRequest)
            }
        }
        var headers = HTTPFields()
        for (name, value) in response.headers {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        return Response(status: .init(code: response.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: response.body)))
    }

    /// Runs an upgraded connection on `/p/<portal>/<prefix>/...`: checks the portal, the
    /// plugin and the rate limits (a refusal closes the connection with 1008, or 1013 when
    /// rate limited, and the reason, because a failed upgrade could only be a bare 400),
    /// asks the plugin (`ws_open`), then pumps frames both ways until either side closes.
    func runWebSocket(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, context: WebSocketRouterContext<KernelRequestContext>) async throws {
        let target: Target
        do {
            if let bucket = perClient {
                let decision = await rateLimiter.take(key: "client:" + context.requestContext.clientAddress, bucket: bucket)
                if !decision.allowed { throw GatewayMiddleware.tooManyRequests(decision, scope: "your address") }
            }
            target = try resolve(context.request)
        } catch let error as GatewayError {
            try await outbound.close(error.statusCode == 429 ? .init(codeNumber: 1013) : .policyViolation, reason: Self.closeReason(error.message))
            return
        }
        defer { target.instance.release() }
        do {
            guard target.instance.plugin.acceptsWebSockets else {
                throw GatewayError(status: 404, code: "websocket_not_supported", message: "plugin \"\(target.instance.plugin.name)\" does not accept WebSocket connections")
            }
            try await limitPortal(target)
        } catch let error as GatewayError {
            try await outbound.close(error.statusCode == 429 ? .init(codeNumber: 1013) : .policyViolation, reason: Self.closeReason(error.message))
            return
        }
        let instance = target.instance
        let descriptor = instance.plugin.descriptor.pointee
        let channel = context.requestContext.channel
        let hub = plugins.context.webSockets
        let (connection, queue) = hub.open(abort: { channel.close(promise: nil) })
        defer { hub.remove(connection) }
        let certificate = await clientCertificateSubject(context.requestContext)
        let credential: [UInt8]
        do {
            credential = try await credentials.credentialJSON(for: context.request.headers, portal: instance.portal.name, query: context.request.uri.query,
                                                              clientCertificatePresented: !certificate.isEmpty)
        } catch let error as GatewayError {
            try await outbound.close(.policyViolation, reason: Self.closeReason(error.message))
            return
        }
        let fields = HostRequestFields(request: context.request, subpath: target.subpath, prefix: target.prefix, portal: instance.portal.name,
                                       requestID: context.requestContext.requestID, remote: context.requestContext.clientAddress,
                                       certificate: certificate, credential: credential, body: ByteBuffer())
        let message = ErrorBuffer()
        let status = fields.withHostRequest { descriptor.ws_open!(instance.pointer, connection, $0, message.buffer) }
        guard status == MB_OK else {
            let reason = message.text.isEmpty ? "refused by plugin \(instance.plugin.name)" : message.text
            try await outbound.close(.policyViolation, reason: Self.closeReason(reason))
            return
        }
        let onMessage = PluginDescriptorLayout.has(\.ws_message, in: instance.plugin.descriptor) ? descriptor.ws_message : nil
        var closeCode: UInt16 = 1000
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await frame in queue {
                    defer { hub.written(connection, size: frame.size) }
                    do {
                        switch frame {
                        case .text(let bytes): try await outbound.write(.text(String(decoding: bytes, as: UTF8.self)))
                        case .binary(let bytes): try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
                        case .close(let code, let reason):
                            try await outbound.close(.init(codeNumber: Int(code)), reason: reason)
                            return
                        }
                    } catch {
                        return
                    }
                }
            }
            do {
                for try await frame in inbound.messages(maxSize: bodyLimit) {
                    switch frame {
                    case .text(let text):
                        var copy = text
                        copy.withUTF8 { onMessage?(instance.pointer, connection, 1, mb_host_bytes(data: $0.baseAddress, len: $0.count)) }
                    case .binary(let buffer):
                        buffer.withUnsafeReadableBytes { raw in
                            onMessage?(instance.pointer, connection, 0,
                                                   mb_host_bytes(data: raw.baseAddress?.assumingMemoryBound(to: UInt8.self), len: raw.count))
                        }
                    }
                }
            } catch {
                closeCode = 1002
            }
            hub.remove(connection)
            group.cancelAll()
        }
        if PluginDescriptorLayout.has(\.ws_close, in: instance.plugin.descriptor) { descriptor.ws_close?(instance.pointer, connection, closeCode) }
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
    let method: [UInt8]
    let path: [UInt8]
    let query: [UInt8]
    let headers: [[UInt8]]
    let body: ByteBuffer
    let portal: [UInt8]
    let requestID: [UInt8]
    let remote: [UInt8]
    let certificate: [UInt8]
    let prefix: [UInt8]
    let credential: [UInt8]

    init(request: Request, subpath: String, prefix: String, portal: String, requestID: String, remote: String, certificate: String,
         credential: [UInt8], body: ByteBuffer) {
        method = Array(request.method.rawValue.utf8)
        path = Array(subpath.utf8)
        query = Array((request.uri.query ?? "").utf8)
        headers = request.headers.flatMap { [Array($0.name.canonicalName.utf8), Array($0.value.utf8)] }
        self.body = body
        self.portal = Array(portal.utf8)
        self.requestID = Array(requestID.utf8)
        self.remote = Array(remote.utf8)
        self.certificate = Array(certificate.utf8)
        self.prefix = Array(prefix.utf8)
        self.credential = credential
    }

    /// Calls `body` with an `mb_host_request` valid only during the call.
    func withHostRequest<R>(_ call: (UnsafePointer<mb_host_request>) -> R) -> R {
        func bytes(_ buffer: UnsafeBufferPointer<UInt8>) -> mb_host_bytes { mb_host_bytes(data: buffer.baseAddress, len: buffer.count) }
        return method.withUnsafeBufferPointer { method in
            path.withUnsafeBufferPointer { path in
                query.withUnsafeBufferPointer { query in
                    portal.withUnsafeBufferPointer { portal in
                        requestID.withUnsafeBufferPointer { requestID in
                            remote.withUnsafeBufferPointer { remote in
                                certificate.withUnsafeBufferPointer { certificate in
                                  prefix.withUnsafeBufferPointer { prefix in
                                   credential.withUnsafeBufferPointer { credential in
                                    body.withUnsafeReadableBytes { rawBody in
                                        withHostHeaders(headers) { headerPointer, headerCount in
                                            var request = mb_host_request(
                                                struct_size: MemoryLayout<mb_host_request>.size,
                                                method: bytes(method), path: bytes(path), query: bytes(query),
                                                headers: headerPointer, header_count: headerCount,
                                                body: mb_host_bytes(data: rawBody.baseAddress?.assumingMemoryBound(to: UInt8.self), len: rawBody.count),
                                                portal_name: bytes(portal), request_id: bytes(requestID), remote_address: bytes(remote),
                                                client_certificate_subject: bytes(certificate),
                                                route_prefix: bytes(prefix), credential_json: bytes(credential))
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
