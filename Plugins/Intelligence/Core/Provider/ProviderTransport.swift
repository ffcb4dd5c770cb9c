/// One HTTP request to a model provider.
public struct ProviderHTTPRequest: Sendable {
    /// The absolute `http(s)://` URL.
    public var url: String
    /// `GET` or `POST`.
    public var method: String
    /// Headers in order (`authorization` carries the API key: never log them).
    public var headers: [(name: String, value: String)]
    /// The JSON body.
    public var body: [UInt8]
    /// How long the whole exchange may take, in seconds.
    public var timeoutSeconds: Int

    /// A request to `url`.
    public init(url: String, method: String, headers: [(name: String, value: String)], body: [UInt8], timeoutSeconds: Int) {
        self.url = url
        self.method = method
        self.headers = headers
        self.body = body
        self.timeoutSeconds = timeoutSeconds
    }
}

/// A provider's HTTP answer, whole (a streamed answer's SSE text included).
public struct ProviderHTTPResponse: Sendable {
    /// The HTTP status.
    public var status: Int
    /// Headers in order.
    public var headers: [(name: String, value: String)]
    /// The body.
    public var body: [UInt8]

    /// A response with `status`, `headers` and `body`.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name.lowercased() == lowered }?.value
    }
}

/// Carries provider requests: the plugin implements it with the kernel's egress
/// (`http_fetch`), tests with a recorded or scripted answer. Implementations throw a
/// ``ProviderError`` (a timeout, a refused or unreachable host); any other error is reported
/// as an unreachable provider.
public protocol ProviderTransport: Sendable {
    /// Sends `request` and returns the provider's whole answer, whatever its status.
    func send(_ request: ProviderHTTPRequest) async throws -> ProviderHTTPResponse
}
