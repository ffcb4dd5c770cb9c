/// Where and how to reach one OpenAI-compatible provider: what a portal configured, with
/// the API key read from its Vault.
public struct ProviderEndpoint: Sendable {
    /// The API's base URL without a trailing slash (`https://api.openai.com/v1`); requests go
    /// to `<baseURL>/chat/completions` and `<baseURL>/embeddings`.
    public var baseURL: String
    /// The API key, sent as `Authorization: Bearer`; nil for keyless local servers.
    public var apiKey: String?
    /// The chat model's name.
    public var chatModel: String
    /// The embedding model's name; nil when the portal configured none.
    public var embeddingModel: String?
    /// Whether chat requests ask for SSE streaming.
    public var stream: Bool
    /// How long one request may take, in seconds.
    public var timeoutSeconds: Int
    /// `max_tokens` sent with chat requests; nil sends none.
    public var maxTokens: Int?
    /// The largest provider answer accepted, in bytes.
    public var maxResponseBytes: Int
    /// The most tool calls accepted in one assistant turn.
    public var maxToolCalls: Int
    /// The most texts sent in one embeddings request (longer lists are split).
    public var embeddingBatchSize: Int

    /// An endpoint at `baseURL` (a trailing `/` is dropped).
    public init(
        baseURL: String, apiKey: String?, chatModel: String, embeddingModel: String? = nil, stream: Bool = false, timeoutSeconds: Int = 60,
        maxTokens: Int? = nil, maxResponseBytes: Int = 8 << 20, maxToolCalls: Int = 64, embeddingBatchSize: Int = 64
    ) {
        var url = baseURL
        while url.hasSuffix("/") { url.removeLast() }
        self.baseURL = url
        self.apiKey = apiKey
        self.chatModel = chatModel
        self.embeddingModel = embeddingModel
        self.stream = stream
        self.timeoutSeconds = timeoutSeconds
        self.maxTokens = maxTokens
        self.maxResponseBytes = maxResponseBytes
        self.maxToolCalls = maxToolCalls
        self.embeddingBatchSize = max(1, embeddingBatchSize)
    }

    /// `<baseURL>/chat/completions`.
    public var chatURL: String { baseURL + "/chat/completions" }
    /// `<baseURL>/embeddings`.
    public var embeddingsURL: String { baseURL + "/embeddings" }

    /// The headers of every request: JSON, and the key when there is one.
    public func headers(streaming: Bool) -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = [
            ("content-type", "application/json"), ("accept", streaming ? "text/event-stream" : "application/json"),
        ]
        if let apiKey, !apiKey.isEmpty { headers.append(("authorization", "Bearer " + apiKey)) }
        return headers
    }
}
