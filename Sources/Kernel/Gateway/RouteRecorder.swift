import HTTPTypes
import Hummingbird

/// A router front that registers every route on the real ``Router`` and remembers each
/// (method, path) it was given, so the kernel can compare what it serves with what
/// ``KernelOpenAPI`` says it serves. Used only while routes are registered, on one task.
final class RouteRecorder: RouterMethods {
    typealias Context = KernelRequestContext

    /// One registered route, its path in OpenAPI's template syntax (Hummingbird's
    /// `RouterPath` renders `:name` as `{name}`).
    struct Route: Hashable, Sendable, CustomStringConvertible {
        /// Upper-case method (`GET`).
        var method: String
        /// The path (`/v1/hub/portals/{name}`, `/p/**`).
        var path: String

        /// `GET /v1/system/status`.
        var description: String { "\(method) \(path)" }

        /// Whether the path has a wildcard (`/p/**`), which OpenAPI cannot describe.
        var isWildcard: Bool { path.contains("*") }
    }

    /// The router every call goes to.
    let router: Router<KernelRequestContext>
    /// Routes in registration order.
    private(set) var routes: [Route] = []

    /// A recorder in front of `router`.
    init(_ router: Router<KernelRequestContext>) {
        self.router = router
    }

    /// Registers on the router and records the route.
    @discardableResult func on<Responder: HTTPResponder>(
        _ path: RouterPath, method: HTTPRequest.Method, responder: Responder
    ) -> Self where Responder.Context == KernelRequestContext {
        router.on(path, method: method, responder: responder)
        routes.append(Route(method: method.rawValue, path: path.description))
        return self
    }

    /// Adds middleware to the router (it applies to routes registered after it).
    @discardableResult func add(middleware: any MiddlewareProtocol<Request, Response, KernelRequestContext>) -> Self {
        router.add(middleware: middleware)
        return self
    }
}
