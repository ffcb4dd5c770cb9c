import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// Builds the HTTP/WebSocket applications (one per listener) over one set of routes.
struct Gateway {
    let config: KernelConfig
    let plugins: PluginHost
    let portals: PortalRegistry
    let rateLimiter: RateLimiter
    let systemRoutes: SystemRoutes
    let logger: Logger
    /// Listening sockets inherited from the supervisor, one per listener in order; empty:
    /// each application binds its listener's address itself.
    var inheritedListeners: [CInt] = []
    /// Receives every (method, path) the HTTP router serves, once the routes are registered.
    var onRoutes: (@Sendable ([RouteRecorder.Route]) -> Void)? = nil

    /// One Hummingbird application per configured listener.
    /// `onListening` receives the listener and the bound port.
    func applications(onListening: @escaping @Sendable (ListenerConfig, Int) -> Void) throws -> [any Service] {
        let credentials = CredentialResolver(
            portalKeys: portals.keys, adminIdentity: systemRoutes.adminAPI?.identity,
            adminRequiresClientCertificate: config.adminRequiresClientCertificate)
        // Plugins verify tokens from WebSocket messages (portal_token_verify) through the same resolver.
        plugins.context.install(credentials: credentials)
        let portalRoutes = PortalRouteHandler(
            plugins: plugins, portals: portals, rateLimiter: rateLimiter, requestTimeout: config.requestTimeoutSeconds,
            perClient: config.rateLimit.perClient,
            credentials: credentials,
            bodyLimit: config.bodyLimitBytes,
            // Plain listeners have no client certificates to ask the pipeline for.
            usesTLS: config.listeners.contains(where: \.usesTLS))
        let metrics = RequestMetrics()
        let requestIDs = RequestIDs()
        let middleware = GatewayMiddleware(
            rateLimiter: rateLimiter, perClient: config.rateLimit.perClient, bodyLimit: config.bodyLimitBytes, metrics: metrics, requestIDs: requestIDs,
            trustedProxies: config.trustedProxies)

        let router = Router(context: KernelRequestContext.self)
        router.middlewares.add(middleware)
        if config.adminRequiresClientCertificate {
            router.middlewares.add(AdminCertificateMiddleware(state: systemRoutes.state, clientCAPaths: config.listeners.compactMap(\.clientCAPath)))
        }
        let recorder = RouteRecorder(router)
        systemRoutes.register(on: recorder)
        for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete, .head, .options] {
            recorder.on("/p/**", method: method) { request, context in try await portalRoutes.handle(request, context: context) }
        }
        onRoutes?(recorder.routes)

        let webSocketRouter = Router(context: KernelRequestContext.self)
        webSocketRouter.middlewares.add(
            GatewayMiddleware(
                rateLimiter: rateLimiter, perClient: nil, bodyLimit: config.bodyLimitBytes, metrics: metrics, requestIDs: requestIDs,
                trustedProxies: config.trustedProxies))
        // The upgrade request passes the gateway's middleware; the route admits it and the
        // connection channel (KernelConnectionChannel) opens it with its plugin.
        webSocketRouter.get("/p/**") { _, context -> Response in
            context.admittedWebSocket.admit(context)
            return Response(status: .ok)
        }
        let webSocketResponder = webSocketRouter.buildResponder()
        let admitWebSocket: @Sendable (Request, any Channel, Logger) async -> (KernelRequestContext, HTTPFields)? = { request, channel, logger in
            let context = KernelRequestContext(source: .init(channel: channel, logger: logger))
            guard let response = try? await webSocketResponder.respond(to: request, context: context), response.status == .ok,
                let admitted = context.admittedWebSocket.take()
            else { return nil }
            return (admitted, response.headers)
        }

        // The status, echo and portal routes are answered in the connection's pipeline
        // when nothing on their way would suspend (DirectRoutes); the router serves the rest.
        let directRoutes = DirectRoutes(
            state: systemRoutes.state, portalRoutes: portalRoutes, rateLimiter: rateLimiter, perClient: config.rateLimit.perClient,
            echoBodyLimit: systemRoutes.bodyLimit, systemRoutesDirect: !config.adminRequiresClientCertificate, logger: logger,
            metrics: metrics, requestIDs: requestIDs, trustedProxies: config.trustedProxies)
        let http1 = HTTP1Channel.Configuration(additionalChannelHandlers: [DirectRouteInstaller(routes: directRoutes)], idleTimeout: .seconds(75))
        let bodyLimit = config.bodyLimitBytes
        let connections: @Sendable (@escaping HTTPChannelHandler.Responder) -> KernelConnectionChannel = { responder in
            KernelConnectionChannel(
                responder: responder, admit: admitWebSocket, open: { await portalRoutes.openWebSocket($0) }, http1: http1, maxMessageBytes: bodyLimit)
        }
        return try config.listeners.enumerated().map { index, listener -> any Service in
            if index < inheritedListeners.count {
                let tls = listener.usesTLS ? try tlsConfiguration(for: listener) : nil
                return InheritedListenerApplication(
                    responder: router.buildResponder(),
                    childChannel: { responder in
                        let http = connections(responder)
                        guard let tls else { return http }
                        return try TLSChannel(http, tlsConfiguration: tls)
                    },
                    descriptor: inheritedListeners[index], logger: logger,
                    onServerRunning: { channel in onListening(listener, channel.localAddress?.port ?? listener.port) })
            }
            var server = HTTPServerBuilder { responder in connections(responder) }
            if listener.usesTLS { server = try .tls(server, tlsConfiguration: tlsConfiguration(for: listener)) }
            return Application(
                router: router,
                server: server,
                configuration: .init(address: .hostname(listener.host, port: listener.port), serverName: nil),
                onServerRunning: { channel in onListening(listener, channel.localAddress?.port ?? listener.port) },
                logger: logger)
        }
    }

    /// TLS settings of a listener; with `client_ca` a client certificate signed by it is
    /// required, or with `client_certificates = "optional"` checked only when presented.
    func tlsConfiguration(for listener: ListenerConfig) throws -> TLSConfiguration {
        guard let certificatePath = listener.tlsCertificatePath, let keyPath = listener.tlsKeyPath else {
            throw GatewayError(status: 500, code: "tls_config", message: "listener has no certificate")
        }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            if let clientCA = listener.clientCAPath {
                tls.certificateVerification = listener.clientCertificates == .optional ? .optionalVerification : .noHostnameVerification
                tls.trustRoots = .file(clientCA)
            }
            return tls
        } catch {
            throw ConfigError(
                file: config.sourcePath, line: nil, key: "listeners",
                message: "cannot load TLS files for \(listener.host):\(listener.port) (\(certificatePath), \(keyPath)): \(error)")
        }
    }
}
