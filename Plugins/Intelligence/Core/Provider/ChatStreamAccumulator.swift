import MeltyJSON

/// Builds one ``ChatTurn`` from a streamed chat completion (`chat.completion.chunk` events):
/// appends `delta.content`, assembles `delta.tool_calls` by `index` (the first delta of a
/// call brings its `id` and `function.name`, the next ones pieces of `function.arguments`),
/// keeps the last `finish_reason` and `usage`, stops at `data: [DONE]`. Feed it the body in
/// pieces of any size; garbage is an error, never a crash.
public struct ChatStreamAccumulator: Sendable {
    /// The provider's URL, for messages.
    public let url: String
    /// The most tool calls accepted.
    public let maxToolCalls: Int
    /// The most text accepted (content plus arguments), in bytes.
    public let maxTextBytes: Int
    private var parser: ServerSentEventParser
    private var content = ""
    private var sawContent = false
    private var calls: [PartialCall] = []
    private var finishReason: String?
    private var promptTokens = 0
    private var completionTokens = 0
    private var textBytes = 0
    /// Whether `[DONE]` arrived (later bytes are ignored).
    public private(set) var done = false

    /// A tool call being assembled.
    private struct PartialCall: Sendable {
        var index: Int
        var id: String?
        var name = ""
        var arguments = ""
    }

    /// An accumulator for the stream of the provider at `url`.
    public init(url: String, maxToolCalls: Int = 64, maxTextBytes: Int = 8 << 20) {
        self.url = url
        self.maxToolCalls = maxToolCalls
        self.maxTextBytes = maxTextBytes
        parser = ServerSentEventParser(maxLineBytes: maxTextBytes)
    }

    /// Takes the next piece of the body.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(ProviderError) {
        guard !done else { return }
        let events: [ServerSentEventParser.Event]
        do {
            events = try parser.feed(bytes)
        } catch {
            throw ProviderError(.tooLarge, message: "the model provider at \(url) streamed a line longer than \(error.limit) bytes")
        }
        for event in events where !done { try take(event) }
    }

    /// The assembled turn once the body ended. Throws when the stream stopped before the
    /// model finished (no `finish_reason` and no `[DONE]`).
    public mutating func finish() throws(ProviderError) -> ChatTurn {
        if !done, let event = parser.finish() { try take(event) }
        guard done || finishReason != nil else {
            throw ProviderError(.malformed, message: "the model provider at \(url) ended its stream before the answer was complete (no finish_reason, no [DONE])")
        }
        let toolCalls = calls.sorted { $0.index < $1.index }.map { call in
            ToolCall(id: call.id ?? "call_\(call.index)", name: call.name, arguments: call.arguments.isEmpty ? "{}" : call.arguments)
        }
        if let unnamed = toolCalls.first(where: { $0.name.isEmpty }) {
            throw ProviderError(.malformed, message: "the model provider at \(url) streamed tool call \(unnamed.id) without a function name")
        }
        let message = ChatMessage(role: "assistant", content: sawContent ? content : nil, toolCalls: toolCalls.isEmpty ? nil : toolCalls)
        return ChatTurn(message: message, finishReason: finishReason, promptTokens: promptTokens, completionTokens: completionTokens)
    }

    private mutating func take(_ event: ServerSentEventParser.Event) throws(ProviderError) {
        let data = event.data.trimmingWhitespace()
        if data.isEmpty { return }
        if data == "[DONE]" {
            done = true
            return
        }
        guard let chunk = JSONValue.object(json: Array(data.utf8)) else {
            throw ProviderError(.malformed, message: "the model provider at \(url) streamed an event that is not a JSON object: \(ChatCompletionCodec.snippet(Array(data.utf8)))")
        }
        if event.type == "error" || (chunk["error"] != nil && chunk["error"] != .null) {
            let detail = ProviderError.providerMessage(Array(data.utf8), secret: nil) ?? "no message"
            throw ProviderError(.serverError, message: "the model provider at \(url) reported an error in its stream: \(detail)")
        }
        if let usage = chunk["usage"], usage != .null {
            (promptTokens, completionTokens) = ChatCompletionCodec.usage(usage)
        }
        guard let choice = chunk["choices"]?.arrayValue?.first?.objectValue else { return }
        if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
        guard let delta = (choice["delta"] ?? choice["message"])?.objectValue else { return }
        if let text = ChatCompletionCodec.contentText(delta["content"]) {
            try grow(text.utf8.count)
            content += text
            if !text.isEmpty || delta["content"] != nil { sawContent = true }
        }
        for item in delta["tool_calls"]?.arrayValue ?? [] {
            guard let call = item.objectValue else { continue }
            try merge(call)
        }
    }

    /// Merges one `delta.tool_calls` element into the call with its `index` (a delta
    /// without `index`, as some servers send whole calls, opens a new call when it has a
    /// new `id` and continues the last one otherwise).
    private mutating func merge(_ delta: [String: JSONValue]) throws(ProviderError) {
        let id = delta["id"]?.stringValue
        let function = delta["function"]?.objectValue ?? [:]
        var index: Int
        if let number = delta["index"]?.numberValue {
            guard number.isFinite, number >= 0, number < Double(maxToolCalls), let exact = Int(exactly: number) else {
                throw ProviderError(.malformed, message: "the model provider at \(url) streamed a tool call index outside 0..<\(maxToolCalls)")
            }
            index = exact
        } else if let last = calls.last, id == nil || id == last.id {
            index = last.index
        } else {
            index = (calls.map(\.index).max() ?? -1) + 1
        }
        var position = calls.firstIndex { $0.index == index }
        if position == nil {
            guard calls.count < maxToolCalls else {
                throw ProviderError(.malformed, message: "the model provider at \(url) streamed more than \(maxToolCalls) tool calls in one turn")
            }
            calls.append(PartialCall(index: index))
            position = calls.count - 1
        }
        guard let position else { return }
        if let id, !id.isEmpty { calls[position].id = id }
        if let name = function["name"]?.stringValue, !name.isEmpty {
            try grow(name.utf8.count)
            // Servers repeat the name on every delta, or send it once: never concatenate.
            calls[position].name = name
        }
        switch function["arguments"] {
        case .string(let piece)?:
            try grow(piece.utf8.count)
            calls[position].arguments += piece
        case nil, .null?:
            break
        case let whole?:
            // Some servers send the arguments as a JSON object, whole.
            let text = ChatCompletionCodec.argumentsText(whole)
            try grow(text.utf8.count)
            calls[position].arguments = text
        }
    }

    private mutating func grow(_ count: Int) throws(ProviderError) {
        textBytes += count
        guard textBytes <= maxTextBytes else {
            throw ProviderError(.tooLarge, message: "the model provider at \(url) streamed more than \(maxTextBytes) bytes of text")
        }
    }
}
