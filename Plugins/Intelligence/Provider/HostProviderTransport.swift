import MeltyPluginSDK
import ModelProvider

/// Carries provider requests through the kernel's egress (`http_fetch`) for one portal, so
/// the kernel's egress policy (`[plugins.intelligence] egress_hosts`) applies to them.
struct HostProviderTransport: ProviderTransport {
    /// The kernel.
    let host: PluginHostServices
    /// The portal the requests are made for.
    let portal: Portal

    /// Sends `request`; a refused host, a timeout or a connection failure becomes a ``ProviderError``.
    func send(_ request: ProviderHTTPRequest) async throws -> ProviderHTTPResponse {
        let milliseconds = UInt32(min(max(request.timeoutSeconds, 1), 86_400) * 1_000)
        do {
            let result = try await host.fetch(
                request.url, method: request.method, headers: request.headers.map { ($0.name, $0.value) }, body: request.body,
                timeoutMilliseconds: milliseconds, portal: portal)
            return ProviderHTTPResponse(status: result.status, headers: result.headers, body: result.body)
        } catch let error as PluginError {
            switch error {
            case .refused(let text):
                throw ProviderError(
                    .egressRefused,
                    message: "the kernel's egress policy refused the model provider at \(request.url) (\(text)); list its host in [plugins.intelligence] egress_hosts")
            case .unavailable(let text):
                let lowered = text.lowercased()
                if lowered.contains("deadline") || lowered.contains("timeout") || lowered.contains("timed out") {
                    throw ProviderError(
                        .timeout, message: "the model provider at \(request.url) did not answer within \(request.timeoutSeconds) s; raise timeout_seconds or use a faster model")
                }
                throw ProviderError(.unreachable, message: "the model provider at \(request.url) could not be reached: \(text)")
            default:
                throw ProviderError(.unreachable, message: "the model provider at \(request.url) could not be reached: \(error)")
            }
        }
    }
}
