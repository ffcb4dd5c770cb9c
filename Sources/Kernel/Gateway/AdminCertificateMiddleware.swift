import Foundation
import Hummingbird
import NIOSSL

/// `[admin] require_client_certificate`: the admin route groups answer 403
/// `client_certificate_required` unless the connection presented a client certificate
/// that the listener verified against its `client_ca`.
///
/// Guarded: `/v1/hub/*`, `/v1/admin/*`, `/v1/audit*`, and `/v1/system/*` once the
/// instance is initialised (before setup the pulse and `POST /v1/system/setup` must stay
/// reachable for the handshake). Portal and plugin routes and `/metrics` are not guarded.
/// Listeners only hand out verified peer certificates (the handshake fails otherwise), so
/// the presence of one is the check.
struct AdminCertificateMiddleware: RouterMiddleware {
    typealias Context = KernelRequestContext
    let state: SystemState
    /// The listeners' `client_ca` files, named in the refusal.
    let clientCAPaths: [String]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if requiresCertificate(path: request.uri.path), (try? await context.channel.nioSSL_peerCertificate().get()) == nil {
            throw refusal(path: request.uri.path)
        }
        return try await next(request, context)
    }

    /// Whether `path` belongs to a guarded group. Compares decoded, non-empty segments so
    /// that `//v1/hub` or `/v1/%68ub` cannot slip past a prefix check.
    func requiresCertificate(path: String) -> Bool {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true).map { String($0).removingPercentEncoding ?? String($0) }
        guard segments.count >= 2, segments[0] == "v1" else { return false }
        switch segments[1] {
        case "hub", "admin": return true
        case "system": return state.isInitialized
        default: return segments[1].hasPrefix("audit")
        }
    }

    private func refusal(path: String) -> GatewayError {
        let authorities = clientCAPaths.isEmpty ? "the instance CA" : "the instance CA (\(Set(clientCAPaths).sorted().joined(separator: ", ")))"
        return GatewayError(
            status: 403, code: "client_certificate_required",
            message: "\(path) is an admin route and needs a client certificate signed by \(authorities); this connection presented none",
            hint:
                "create the instance CA and an admin certificate with `meltybase certs init`, then connect over HTTPS with it (curl --cert admin.pem --key admin.key --cacert ca.pem)"
        )
    }
}
