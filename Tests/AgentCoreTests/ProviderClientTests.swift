import Foundation
import MeltyJSON
import Synchronization
import Testing

@testable import ModelProvider

/// ``OpenAICompatibleClient`` over a scripted transport: what it sends (URL, key, body),
/// streamed and plain answers, error mapping, bounds, usage and embedding batches.
@Suite struct ProviderClientTests {
    /// Answers from a script and records every request.
    final class ScriptedTransport: ProviderTransport {
        let answers: Mutex<[Result<ProviderHTTPResponse, any Error>]>
        let sent = Mutex<[ProviderHTTPRequest]>([])

        init(_ answers: [Result<ProviderHTTPResponse, any Error>]) { self.answers = Mutex(answers) }

        func send(_ request: ProviderHTTPRequest) async throws -> ProviderHTTPResponse {
            sent.withLock { $0.append(request) }
            let answer = answers.withLock { $0.isEmpty ? nil : $0.removeFirst() }
            guard let answer else { throw ProviderError(.serverError, message: "no scripted answer") }
            return try answer.get()
        }

        var requests: [ProviderHTTPRequest] { sent.withLock { $0 } }
    }

    struct Unreachable: Error, CustomStringConvertible {
        var description: String { "connection refused to sk-live-KEY-1234" }
    }

    static let key = "sk-live-KEY-1234"

    static func json(_ text: String, status: Int = 200) -> Result<ProviderHTTPResponse, any Error> {
        .success(ProviderHTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: Array(text.utf8)))
    }

    static func endpoint(stream: Bool = false, batch: Int = 64, maxBytes: Int = 8 << 20) -> ProviderEndpoint {
        ProviderEndpoint(
            baseURL: "http://127.0.0.1:9/v1/", apiKey: key, chatModel: "test-chat", embeddingModel: "test-embed", stream: stream, timeoutSeconds: 12,
            maxTokens: 50, maxResponseBytes: maxBytes, embeddingBatchSize: batch)
    }

    static let textAnswer = #"{"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#

    @Test func plainChatSendsKeyModelAndParsesTheAnswer() async throws {
        let transport = ScriptedTransport([Self.json(Self.textAnswer)])
        let usage = Mutex<[ProviderUsage]>([])
        let client = OpenAICompatibleClient(endpoint: Self.endpoint(), transport: transport, onUsage: { value in usage.withLock { $0.append(value) } })
        let turn = try await client.chat([.user("hi")], tools: [])
        #expect(turn.message.content == "hello" && turn.totalTokens == 6)
        let request = try #require(transport.requests.first)
        #expect(request.url == "http://127.0.0.1:9/v1/chat/completions" && request.method == "POST" && request.timeoutSeconds == 12)
        #expect(request.headers.contains { $0.name == "authorization" && $0.value == "Bearer " + Self.key })
        let body = try #require(JSONValue.object(json: request.body))
        #expect(body["model"] == "test-chat" && body["max_tokens"] == 50 && body["stream"] == nil)
        #expect(usage.withLock { $0 } == [ProviderUsage(promptTokens: 5, completionTokens: 1, estimated: false)])
    }

    @Test func keylessEndpointSendsNoAuthorization() async throws {
        let transport = ScriptedTransport([Self.json(Self.textAnswer)])
        var endpoint = Self.endpoint()
        endpoint.apiKey = nil
        _ = try await OpenAICompatibleClient(endpoint: endpoint, transport: transport).chat([.user("hi")], tools: [])
        #expect(transport.requests.first?.headers.contains { $0.name == "authorization" } == false)
    }

    @Test func streamingChatParsesSSEAndAcceptsAServerThatIgnoresStream() async throws {
        let sse = ProviderStreamTests.body(ProviderStreamTests.openAIToolCall)
        let transport = ScriptedTransport([
            .success(ProviderHTTPResponse(status: 200, headers: [("content-type", "text/event-stream; charset=utf-8")], body: sse)), Self.json(Self.textAnswer),
        ])
        let client = OpenAICompatibleClient(endpoint: Self.endpoint(stream: true), transport: transport)
        let turn = try await client.chat([.user("weather?")], tools: [ToolSpec(name: "get_weather", description: "", parametersJSON: "{}")])
        #expect(turn.message.toolCalls?.first?.name == "get_weather" && turn.finishReason == "tool_calls" && turn.promptTokens == 70)
        let body = try #require(JSONValue.object(json: transport.requests[0].body))
        #expect(body["stream"] == true)
        #expect(transport.requests[0].headers.contains { $0.name == "accept" && $0.value == "text/event-stream" })
        #expect(try await client.chat([.user("hi")], tools: []).message.content == "hello")
    }

    @Test func failuresAreProviderErrorsWithoutTheKey() async {
        let cases: [(Result<ProviderHTTPResponse, any Error>, ProviderError.Kind)] = [
            (Self.json(#"{"error":{"message":"Incorrect API key provided: sk-live-KEY-1234"}}"#, status: 401), .unauthorized),
            (Self.json(#"{"error":{"message":"The model `nope` does not exist"}}"#, status: 404), .notFound),
            (.success(ProviderHTTPResponse(status: 429, headers: [("retry-after", "3")], body: [])), .rateLimited),
            (Self.json("upstream died", status: 500), .serverError), (Self.json("<html>", status: 200), .malformed),
            (.failure(Unreachable()), .unreachable), (.failure(ProviderError(.timeout, message: "slow")), .timeout),
            (Self.json(#"{"error":{"message":"context length exceeded"}}"#, status: 400), .rejected),
        ]
        for (answer, kind) in cases {
            let client = OpenAICompatibleClient(endpoint: Self.endpoint(), transport: ScriptedTransport([answer]))
            do {
                _ = try await client.chat([.user("hi")], tools: [])
                Issue.record("no error for \(kind)")
            } catch let error as ProviderError {
                #expect(error.kind == kind)
                #expect(!error.message.contains(Self.key), "\(error.message)")
                if kind != .timeout { #expect(error.message.contains("http://127.0.0.1:9/v1")) }
                if kind == .rateLimited { #expect(error.retryAfterSeconds == 3) }
            } catch {
                Issue.record("not a ProviderError: \(error)")
            }
        }
    }

    @Test func oversizedAnswerIsRefused() async {
        let big = Self.json(#"{"choices":[{"message":{"content":""# + String(repeating: "x", count: 2_000) + #""}}]}"#)
        let client = OpenAICompatibleClient(endpoint: Self.endpoint(maxBytes: 1_000), transport: ScriptedTransport([big]))
        await #expect(throws: ProviderError.self) { try await client.chat([.user("hi")], tools: []) }
    }

    @Test func usageIsEstimatedWhenTheProviderReportsNone() async throws {
        let usage = Mutex<[ProviderUsage]>([])
        let transport = ScriptedTransport([Self.json(#"{"choices":[{"message":{"content":"twelve chars"}}]}"#)])
        let client = OpenAICompatibleClient(endpoint: Self.endpoint(), transport: transport, onUsage: { value in usage.withLock { $0.append(value) } })
        let turn = try await client.chat([.user("hi")], tools: [])
        #expect(turn.promptTokens == 0)
        let counted = try #require(usage.withLock { $0.first })
        #expect(counted.estimated && counted.completionTokens == 3 && counted.promptTokens > 0)
    }

    @Test func embeddingsAreBatchedInOrder() async throws {
        func answer(_ values: [Float]) -> Result<ProviderHTTPResponse, any Error> {
            let data = values.enumerated().map { #"{"index":\#($0.offset),"embedding":[\#($0.element),1]}"# }.joined(separator: ",")
            return Self.json(#"{"data":[\#(data)],"usage":{"prompt_tokens":2}}"#)
        }
        let transport = ScriptedTransport([answer([0, 1]), answer([2, 3]), answer([4])])
        let client = OpenAICompatibleClient(endpoint: Self.endpoint(batch: 2), transport: transport)
        let vectors = try await client.embed(["a", "b", "c", "d", "e"])
        #expect(vectors.map { $0[0] } == [0, 1, 2, 3, 4])
        #expect(transport.requests.count == 3)
        #expect(transport.requests.allSatisfy { $0.url == "http://127.0.0.1:9/v1/embeddings" })
        #expect(JSONValue.object(json: transport.requests[2].body)?["input"] == ["e"])
    }

    @Test func embeddingWithoutModelIsRefusedBeforeSending() async {
        var endpoint = Self.endpoint()
        endpoint.embeddingModel = nil
        let transport = ScriptedTransport([])
        await #expect(throws: ProviderError.self) { try await OpenAICompatibleClient(endpoint: endpoint, transport: transport).embed(["a"]) }
        #expect(transport.requests.isEmpty)
    }
}
