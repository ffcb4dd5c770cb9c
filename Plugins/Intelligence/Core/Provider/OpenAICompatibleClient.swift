/// What one provider call used, for metering.
public struct ProviderUsage: Sendable, Equatable {
    /// Prompt tokens (the provider's count; estimated at 4 bytes a token when it gave none).
    public var promptTokens: Int
    /// Completion tokens (likewise).
    public var completionTokens: Int
    /// Whether the counts are estimates because the provider reported none.
    public var estimated: Bool

    /// Usage of `promptTokens` plus `completionTokens`.
    public init(promptTokens: Int, completionTokens: Int, estimated: Bool) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.estimated = estimated
    }

    /// Prompt plus completion tokens.
    public var totalTokens: Int { promptTokens &+ completionTokens }
}

/// A ``ChatModel`` speaking OpenAI-compatible chat completions and embeddings (llama.cpp's
/// server, Ollama's `/v1`, vLLM, OpenAI, Gemini's compatible endpoint) over a transport.
public struct OpenAICompatibleClient: ChatModel {
    /// Where and how.
    public let endpoint: ProviderEndpoint
    /// What carries the requests.
    public let transport: any ProviderTransport
    /// Called after every request the provider answered with success, with what it used.
    public let onUsage: @Sendable (ProviderUsage) -> Void

    /// A client of `endpoint` over `transport`.
    public init(endpoint: ProviderEndpoint, transport: any ProviderTransport, onUsage: @escaping @Sendable (ProviderUsage) -> Void = { _ in }) {
        self.endpoint = endpoint
        self.transport = transport
        self.onUsage = onUsage
    }

    /// One chat completion (streamed when the endpoint says so).
    public func chat(_ messages: [ChatMessage], tools: [ToolSpec]) async throws -> ChatTurn {
        let url = endpoint.chatURL
        let body = try ChatCompletionCodec.requestBody(
            model: endpoint.chatModel, messages: messages, tools: tools, stream: endpoint.stream, maxTokens: endpoint.maxTokens)
        let response = try await send(url: url, body: body, streaming: endpoint.stream)
        let turn: ChatTurn
        if isEventStream(response) {
            var accumulator = ChatStreamAccumulator(url: url, maxToolCalls: endpoint.maxToolCalls, maxTextBytes: endpoint.maxResponseBytes)
            try accumulator.feed(response.body)
            turn = try accumulator.finish()
        } else {
            // A server that ignores `stream` answers plain JSON: accept it (and SSE unasked).
            turn = try ChatCompletionCodec.decodeResponse(response.body, url: url, maxToolCalls: endpoint.maxToolCalls)
        }
        onUsage(usage(of: turn, requestBytes: body.count))
        return turn
    }

    /// The embeddings of `texts` in order, in batches of the endpoint's batch size. Throws
    /// ``ProviderError/Kind/invalidRequest`` when no embedding model is configured.
    public func embed(_ texts: [String]) async throws -> [[Float]] {
        guard let model = endpoint.embeddingModel, !model.isEmpty else {
            throw ProviderError(.invalidRequest, message: "the portal's model provider has no embedding_model configured")
        }
        let url = endpoint.embeddingsURL
        var vectors: [[Float]] = []
        vectors.reserveCapacity(texts.count)
        var start = 0
        while start < texts.count {
            let batch = Array(texts[start..<min(texts.count, start + endpoint.embeddingBatchSize)])
            let body = try EmbeddingCodec.requestBody(model: model, texts: batch)
            let response = try await send(url: url, body: body, streaming: false)
            let decoded = try EmbeddingCodec.decodeResponse(response.body, count: batch.count, url: url)
            if let first = vectors.first, let next = decoded.vectors.first, first.count != next.count {
                throw ProviderError(.malformed, message: "the model provider at \(url) answered embeddings of different dimensions (\(first.count) and \(next.count))")
            }
            vectors += decoded.vectors
            let estimated = decoded.promptTokens == 0
            let prompt = estimated ? estimateTokens(batch.reduce(0) { $0 &+ $1.utf8.count }) : decoded.promptTokens
            onUsage(ProviderUsage(promptTokens: prompt, completionTokens: 0, estimated: estimated))
            start += batch.count
        }
        return vectors
    }

    /// Sends one POST, maps transport failures and non-2xx answers to ``ProviderError``s and
    /// refuses oversized bodies.
    func send(url: String, body: [UInt8], streaming: Bool) async throws -> ProviderHTTPResponse {
        let request = ProviderHTTPRequest(url: url, method: "POST", headers: endpoint.headers(streaming: streaming), body: body, timeoutSeconds: endpoint.timeoutSeconds)
        let response: ProviderHTTPResponse
        do {
            response = try await transport.send(request)
        } catch let error as ProviderError {
            throw error
        } catch {
            let text = ProviderError.clean(String(describing: error), secret: endpoint.apiKey)
            throw ProviderError(.unreachable, message: "the model provider at \(url) could not be reached: \(text)")
        }
        guard (200...299).contains(response.status) else {
            throw ProviderError.from(response: response, url: url, secret: endpoint.apiKey)
        }
        guard response.body.count <= endpoint.maxResponseBytes else {
            throw ProviderError(.tooLarge, message: "the model provider at \(url) answered \(response.body.count) bytes (at most \(endpoint.maxResponseBytes))")
        }
        return response
    }

    /// Whether the answer is SSE (by its content type, or by its first bytes when the
    /// server sends none).
    func isEventStream(_ response: ProviderHTTPResponse) -> Bool {
        if let type = response.header("content-type")?.lowercased() {
            if type.hasPrefix("text/event-stream") { return true }
            if type.hasPrefix("application/json") { return false }
        }
        let start = response.body.drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }.first
        return start != UInt8(ascii: "{") && start != UInt8(ascii: "[")
    }

    /// What `turn` used, estimated from sizes when the provider reported no usage.
    func usage(of turn: ChatTurn, requestBytes: Int) -> ProviderUsage {
        if turn.promptTokens > 0 || turn.completionTokens > 0 {
            return ProviderUsage(promptTokens: turn.promptTokens, completionTokens: turn.completionTokens, estimated: false)
        }
        let answerBytes = (turn.message.content?.utf8.count ?? 0) &+ (turn.message.toolCalls ?? []).reduce(0) { $0 &+ $1.arguments.utf8.count &+ $1.name.utf8.count }
        return ProviderUsage(promptTokens: estimateTokens(requestBytes), completionTokens: estimateTokens(answerBytes), estimated: true)
    }

    /// About one token per 4 bytes, at least 1.
    func estimateTokens(_ bytes: Int) -> Int { max(1, bytes / 4 + (bytes % 4 == 0 ? 0 : 1)) }
}
