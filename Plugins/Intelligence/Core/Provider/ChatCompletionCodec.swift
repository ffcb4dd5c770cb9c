import Foundation
import MeltyJSON

/// The JSON of OpenAI's `POST /chat/completions`: the request body, and the non-streamed
/// answer decoded into a ``ChatTurn``.
public enum ChatCompletionCodec {
    /// The request body for `messages` offering `tools` to `model`. Streaming requests ask
    /// for usage in the last chunk (`stream_options.include_usage`). Throws
    /// ``ProviderError/Kind/invalidRequest`` when a tool's parameters are not a JSON object.
    public static func requestBody(model: String, messages: [ChatMessage], tools: [ToolSpec], stream: Bool, maxTokens: Int?) throws -> [UInt8] {
        var body: [String: JSONValue] = [
            "model": .string(model),
            "messages": .array(messages.map(encode)),
        ]
        if !tools.isEmpty {
            // No `tool_choice`: "auto" is the API's default when tools are offered.
            body["tools"] = .array(try tools.map(encode))
        }
        if stream {
            body["stream"] = true
            body["stream_options"] = ["include_usage": true]
        }
        if let maxTokens { body["max_tokens"] = .number(Double(maxTokens)) }
        do {
            return try JSONValue.serialize(body)
        } catch {
            throw ProviderError(.invalidRequest, message: "the chat request could not be encoded: \(error)")
        }
    }

    /// One message as OpenAI's API writes it.
    static func encode(_ message: ChatMessage) -> JSONValue {
        var object: [String: JSONValue] = ["role": .string(message.role), "content": JSONValue(message.content)]
        if let calls = message.toolCalls, !calls.isEmpty {
            object["tool_calls"] = .array(
                calls.map { call in
                    ["id": .string(call.id), "type": "function", "function": ["name": .string(call.name), "arguments": .string(call.arguments)]]
                })
        }
        if let id = message.toolCallID { object["tool_call_id"] = .string(id) }
        return .object(object)
    }

    /// One tool as a function.
    static func encode(_ tool: ToolSpec) throws -> JSONValue {
        guard let parameters = JSONValue(json: Array(tool.parametersJSON.utf8)), parameters.objectValue != nil else {
            throw ProviderError(.invalidRequest, message: "the parameters of tool \"\(tool.name)\" are not a JSON Schema object")
        }
        return ["type": "function", "function": ["name": .string(tool.name), "description": .string(tool.description), "parameters": parameters]]
    }

    /// The turn in a non-streamed answer (`choices[0].message`, `finish_reason`, `usage`).
    /// Throws ``ProviderError/Kind/malformed`` for anything else, naming `url`.
    public static func decodeResponse(_ body: [UInt8], url: String, maxToolCalls: Int = 64) throws -> ChatTurn {
        guard let object = JSONValue.object(json: body) else {
            throw ProviderError(.malformed, message: "the model provider at \(url) answered something that is not a JSON object: \(snippet(body))")
        }
        if let error = object["error"], error != .null {
            throw ProviderError(
                .rejected, message: "the model provider at \(url) answered an error: \(ProviderError.providerMessage(body, secret: nil) ?? "no message")")
        }
        guard let choice = object["choices"]?.arrayValue?.first?.objectValue, let message = choice["message"]?.objectValue else {
            throw ProviderError(.malformed, message: "the model provider at \(url) answered without choices[0].message: \(snippet(body))")
        }
        var calls: [ToolCall] = []
        for (index, item) in (message["tool_calls"]?.arrayValue ?? []).enumerated() {
            guard calls.count < maxToolCalls else {
                throw ProviderError(.malformed, message: "the model provider at \(url) answered more than \(maxToolCalls) tool calls in one turn")
            }
            guard let call = item.objectValue, let function = call["function"]?.objectValue, let name = function["name"]?.stringValue, !name.isEmpty else {
                throw ProviderError(.malformed, message: "the model provider at \(url) answered a tool call without function.name: \(snippet(body))")
            }
            calls.append(ToolCall(id: call["id"]?.stringValue ?? "call_\(index)", name: name, arguments: argumentsText(function["arguments"])))
        }
        let (prompt, completion) = usage(object["usage"])
        let reply = ChatMessage(role: "assistant", content: contentText(message["content"]), toolCalls: calls.isEmpty ? nil : calls)
        return ChatTurn(message: reply, finishReason: choice["finish_reason"]?.stringValue, promptTokens: prompt, completionTokens: completion)
    }

    /// Message content as text: a string, or the `text` parts of an array of parts.
    static func contentText(_ value: JSONValue?) -> String? {
        switch value {
        case .string(let text)?: return text
        case .array(let parts)?:
            let texts = parts.compactMap { $0.objectValue?["text"]?.stringValue }
            return texts.isEmpty ? nil : texts.joined()
        default: return nil
        }
    }

    /// Tool call arguments as JSON text: a string as is, an object (as some servers send
    /// them) serialized, nothing as `{}`.
    static func argumentsText(_ value: JSONValue?) -> String {
        switch value {
        case .string(let text)?: return text
        case nil, .null?: return "{}"
        case let other?: return (try? JSONValue.serialize(other)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        }
    }

    /// `prompt_tokens` and `completion_tokens` of a `usage` object, each clamped to
    /// 0...1e12 (0 when absent or not a number).
    static func usage(_ value: JSONValue?) -> (prompt: Int, completion: Int) {
        let object = value?.objectValue ?? [:]
        return (tokens(object["prompt_tokens"]), tokens(object["completion_tokens"]))
    }

    /// A token count from the network, range-checked.
    static func tokens(_ value: JSONValue?) -> Int {
        guard let number = value?.numberValue, number.isFinite, number > 0 else { return 0 }
        return number >= 1e12 ? 1_000_000_000_000 : Int(number)
    }

    /// The start of `body` for an error message, on one line.
    static func snippet(_ body: [UInt8]) -> String {
        body.isEmpty ? "(empty body)" : "\"" + ProviderError.clean(String(decoding: body.prefix(200), as: UTF8.self), secret: nil) + "\""
    }
}
