import Foundation
import MeltyJSON
import Testing

@testable import ModelProvider

/// The `/chat/completions` and `/embeddings` codecs and the error mapping, against answers
/// in the shapes OpenAI, llama.cpp's server, Ollama's `/v1` and Gemini's endpoint send.
@Suite struct ProviderCodecTests {
    static let url = "http://127.0.0.1:8080/v1/chat/completions"

    @Test func requestCarriesMessagesToolCallsToolResultsAndTools() throws {
        let messages: [ChatMessage] = [
            .system("be brief"), .user("weather in Paris?"),
            ChatMessage(role: "assistant", content: nil, toolCalls: [ToolCall(id: "call_1", name: "get_weather", arguments: #"{"city":"Paris"}"#)]),
            .tool(#"{"celsius":21}"#, callID: "call_1"),
        ]
        let tools = [ToolSpec(name: "get_weather", description: "current weather", parametersJSON: #"{"type":"object","properties":{"city":{"type":"string"}}}"#)]
        let body = try ChatCompletionCodec.requestBody(model: "gpt-4o-mini", messages: messages, tools: tools, stream: true, maxTokens: 256)
        let object = try #require(JSONValue.object(json: body))
        #expect(object["model"] == "gpt-4o-mini")
        #expect(object["stream"] == true)
        #expect(object["stream_options"] == ["include_usage": true])
        #expect(object["max_tokens"] == 256)
        let sent = try #require(object["messages"]?.arrayValue)
        #expect(sent.count == 4)
        #expect(sent[0] == ["role": "system", "content": "be brief"])
        let call = try #require(sent[2].objectValue?["tool_calls"]?.arrayValue?.first)
        #expect(call == ["id": "call_1", "type": "function", "function": ["name": "get_weather", "arguments": #"{"city":"Paris"}"#]])
        #expect(sent[2].objectValue?["content"] == .null)
        #expect(sent[3] == ["role": "tool", "content": #"{"celsius":21}"#, "tool_call_id": "call_1"])
        let tool = try #require(object["tools"]?.arrayValue?.first?.objectValue)
        #expect(tool["type"] == "function")
        #expect(tool["function"]?.objectValue?["parameters"]?.objectValue?["type"] == "object")
        #expect(object["tool_choice"] == nil)
    }

    @Test func plainRequestHasNoStreamOrToolMembers() throws {
        let body = try ChatCompletionCodec.requestBody(model: "m", messages: [.user("hi")], tools: [], stream: false, maxTokens: nil)
        let object = try #require(JSONValue.object(json: body))
        #expect(object["stream"] == nil && object["tools"] == nil && object["max_tokens"] == nil && object["stream_options"] == nil)
    }

    @Test func toolWithParametersThatAreNotAnObjectIsRefused() {
        let tool = ToolSpec(name: "bad", description: "", parametersJSON: "[1, 2")
        #expect(throws: ProviderError.self) {
            try ChatCompletionCodec.requestBody(model: "m", messages: [.user("x")], tools: [tool], stream: false, maxTokens: nil)
        }
    }

    @Test func decodesOpenAIToolCallAnswer() throws {
        let body = #"""
            {"id":"chatcmpl-9xyz","object":"chat.completion","created":1722000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_abc123","type":"function","function":{"name":"get_current_weather","arguments":"{\n\"location\": \"Boston, MA\"\n}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}},"system_fingerprint":"fp_0ba0d124f1"}
            """#
        let turn = try ChatCompletionCodec.decodeResponse(Array(body.utf8), url: Self.url)
        #expect(turn.message.content == nil)
        #expect(turn.message.toolCalls == [ToolCall(id: "call_abc123", name: "get_current_weather", arguments: "{\n\"location\": \"Boston, MA\"\n}")])
        #expect(turn.finishReason == "tool_calls")
        #expect(turn.promptTokens == 82 && turn.completionTokens == 17 && turn.totalTokens == 99)
    }

    @Test func decodesLlamaCppAnswer() throws {
        let body = #"""
            {"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"Paris is the capital of France."}}],"created":1733000000,"model":"gpt-3.5-turbo","system_fingerprint":"b4273-3573fa8e","object":"chat.completion","usage":{"completion_tokens":8,"prompt_tokens":24,"total_tokens":32},"id":"chatcmpl-Qm2kX","timings":{"prompt_n":24,"prompt_ms":31.2,"predicted_n":8,"predicted_ms":70.4}}
            """#
        let turn = try ChatCompletionCodec.decodeResponse(Array(body.utf8), url: Self.url)
        #expect(turn.message == ChatMessage(role: "assistant", content: "Paris is the capital of France."))
        #expect(turn.promptTokens == 24 && turn.completionTokens == 8)
    }

    @Test func decodesOllamaToolCallAnswerWithObjectArgumentsAndNoID() throws {
        let body = #"""
            {"id":"chatcmpl-412","object":"chat.completion","created":1733000001,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"","tool_calls":[{"index":0,"type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":150,"completion_tokens":20,"total_tokens":170}}
            """#
        let turn = try ChatCompletionCodec.decodeResponse(Array(body.utf8), url: Self.url)
        let call = try #require(turn.message.toolCalls?.first)
        #expect(call.id == "call_0" && call.name == "get_weather")
        #expect(JSONValue(json: Array(call.arguments.utf8)) == ["city": "Paris"])
        #expect(turn.message.content == "")
    }

    @Test func decodesContentGivenAsParts() throws {
        let body = #"{"choices":[{"index":0,"message":{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"finish_reason":"stop"}]}"#
        #expect(try ChatCompletionCodec.decodeResponse(Array(body.utf8), url: Self.url).message.content == "ab")
    }

    @Test func refusesMalformedAnswersWithTheURL() {
        let bodies = [
            "", "<html>bad gateway</html>", "[]", #"{"choices":[]}"#, #"{"choices":[{"message":{"tool_calls":[{"function":{}}]}}]}"#,
            #"{"object":"chat.completion"}"#, "{\"choices\":[{\"message\":{\"content\":\"\u{0}\"}}]", String(repeating: "[", count: 10_000),
        ]
        for body in bodies {
            do {
                _ = try ChatCompletionCodec.decodeResponse(Array(body.utf8), url: Self.url)
                Issue.record("accepted \(body.prefix(40))")
            } catch let error as ProviderError {
                #expect(error.kind == .malformed, "\(body.prefix(40))")
                #expect(error.message.contains(Self.url))
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
    }

    @Test func refusesMoreToolCallsThanTheLimit() {
        let call = #"{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}"#
        let body = #"{"choices":[{"message":{"role":"assistant","tool_calls":["# + Array(repeating: call, count: 5).joined(separator: ",") + "]}}]}"
        #expect(throws: ProviderError.self) { try ChatCompletionCodec.decodeResponse(Array(body.utf8), url: Self.url, maxToolCalls: 4) }
    }

    @Test func hostileUsageNumbersAreClamped() throws {
        let body = #"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1e300,"completion_tokens":-5}}"#
        let turn = try ChatCompletionCodec.decodeResponse(Array(body.utf8), url: Self.url)
        #expect(turn.promptTokens == 1_000_000_000_000 && turn.completionTokens == 0)
        _ = turn.totalTokens
    }

    // MARK: errors

    func response(_ status: Int, _ body: String, headers: [(name: String, value: String)] = []) -> ProviderHTTPResponse {
        ProviderHTTPResponse(status: status, headers: headers, body: Array(body.utf8))
    }

    @Test func unauthorizedNamesTheURLAndNeverTheKey() {
        let key = "sk-proj-SECRETSECRET1234"
        let body =
            #"{"error":{"message":"Incorrect API key provided: sk-proj-SECRETSECRET1234. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#
        let error = ProviderError.from(response: response(401, body), url: Self.url, secret: key)
        #expect(error.kind == .unauthorized && error.status == 401)
        #expect(error.message.contains(Self.url))
        #expect(error.message.contains("Incorrect API key provided"))
        #expect(!error.message.contains(key))
        #expect(ProviderError.from(response: response(403, "{}"), url: Self.url, secret: nil).kind == .unauthorized)
    }

    @Test func geminiErrorArrayIsRead() {
        let body = #"[{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}]"#
        let error = ProviderError.from(response: response(400, body), url: Self.url, secret: nil)
        #expect(error.kind == .rejected)
        #expect(error.message.contains("API key not valid"))
    }

    @Test func notFoundRateLimitedAndServerErrors() {
        let missing = ProviderError.from(
            response: response(404, #"{"error":{"message":"model \"llama9\" not found, try pulling it first","type":"api_error","param":null,"code":null}}"#), url: Self.url,
            secret: nil)
        #expect(missing.kind == .notFound && missing.message.contains("llama9") && missing.message.contains("model"))
        let limited = ProviderError.from(response: response(429, #"{"error":"slow down"}"#, headers: [("Retry-After", " 7 ")]), url: Self.url, secret: nil)
        #expect(limited.kind == .rateLimited && limited.retryAfterSeconds == 7 && limited.message.contains("slow down"))
        let hostile = ProviderError.from(response: response(429, "", headers: [("retry-after", "99999999999999999999")]), url: Self.url, secret: nil)
        #expect(hostile.retryAfterSeconds == nil)
        let date = ProviderError.from(response: response(503, "", headers: [("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]), url: Self.url, secret: nil)
        #expect(date.kind == .serverError && date.retryAfterSeconds == nil)
        let html = ProviderError.from(response: response(502, "<html>\n<h1>502 Bad Gateway</h1>" + String(repeating: "x", count: 5_000)), url: Self.url, secret: nil)
        #expect(html.kind == .serverError && html.message.contains("Bad Gateway") && html.message.count < 700 && !html.message.contains("\n"))
    }

    // MARK: embeddings

    @Test func embeddingRequestAndFloatAnswer() throws {
        let request = try #require(JSONValue.object(json: try EmbeddingCodec.requestBody(model: "text-embedding-3-small", texts: ["a", "b"])))
        #expect(request["input"] == ["a", "b"] && request["model"] == "text-embedding-3-small" && request["encoding_format"] == "float")
        let body = #"""
            {"object":"list","data":[{"object":"embedding","index":1,"embedding":[0.5,-0.25]},{"object":"embedding","index":0,"embedding":[1,0]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":4,"total_tokens":4}}
            """#
        let decoded = try EmbeddingCodec.decodeResponse(Array(body.utf8), count: 2, url: Self.url)
        #expect(decoded.vectors == [[1, 0], [0.5, -0.25]])
        #expect(decoded.promptTokens == 4)
    }

    @Test func embeddingBase64Answer() throws {
        let floats: [Float] = [0.5, -2, 3.25]
        var bytes: [UInt8] = []
        for float in floats { withUnsafeBytes(of: float.bitPattern.littleEndian) { bytes += $0 } }
        let body = #"{"data":[{"index":0,"embedding":""# + Data(bytes).base64EncodedString() + #""}]}"#
        #expect(try EmbeddingCodec.decodeResponse(Array(body.utf8), count: 1, url: Self.url).vectors == [floats])
    }

    @Test func embeddingGarbageIsRefused() {
        let bodies = [
            #"{"data":[]}"#, #"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#,
            #"{"data":[{"index":5,"embedding":[1]},{"index":0,"embedding":[2]}]}"#, #"{"data":[{"index":0,"embedding":[1,2]},{"index":1,"embedding":[2]}]}"#,
            #"{"data":[{"index":0,"embedding":[1e39]},{"index":1,"embedding":[2]}]}"#, #"{"data":[{"index":0,"embedding":"@@@"},{"index":1,"embedding":[2]}]}"#,
            #"{"data":[{"index":0,"embedding":[]},{"index":1,"embedding":[2]}]}"#, #"{"data":[{"index":-1,"embedding":[1]},{"index":1,"embedding":[2]}]}"#,
            #"{"data":[{"index":1e300,"embedding":[1]},{"index":1,"embedding":[2]}]}"#, "nope",
        ]
        for body in bodies {
            #expect(throws: ProviderError.self, "\(body)") { try EmbeddingCodec.decodeResponse(Array(body.utf8), count: 2, url: Self.url) }
        }
    }
}
