/// One message of a chat conversation, as OpenAI-compatible chat completions carry it.
public struct ChatMessage: Sendable, Equatable, Codable {
    /// `system`, `user`, `assistant` or `tool`.
    public var role: String
    /// The text (nil on an assistant message that only calls tools).
    public var content: String?
    /// The tools an assistant message calls.
    public var toolCalls: [ToolCall]?
    /// On a `tool` message: the id of the call it answers.
    public var toolCallID: String?

    /// A message with `role` and `content`.
    public init(role: String, content: String?, toolCalls: [ToolCall]? = nil, toolCallID: String? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
    }

    /// A `system` message.
    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: "system", content: text) }
    /// A `user` message.
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: "user", content: text) }
    /// A `tool` message answering the call `id`.
    public static func tool(_ text: String, callID id: String) -> ChatMessage { ChatMessage(role: "tool", content: text, toolCallID: id) }
}

/// A tool call requested by the model.
public struct ToolCall: Sendable, Equatable, Codable {
    /// The provider's id of the call (echoed in the `tool` message that answers it).
    public var id: String
    /// The function's name.
    public var name: String
    /// The arguments as JSON text (as the model wrote them: may be malformed).
    public var arguments: String

    /// A call of `name` with `arguments` (JSON text).
    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// A function the model may call.
public struct ToolSpec: Sendable, Equatable {
    /// The function's name (`[a-zA-Z0-9_-]{1,64}`).
    public var name: String
    /// What it does, for the model.
    public var description: String
    /// Its parameters as a JSON Schema object, in JSON text.
    public var parametersJSON: String

    /// A tool `name` described by `description` taking `parametersJSON`.
    public init(name: String, description: String, parametersJSON: String) {
        self.name = name
        self.description = description
        self.parametersJSON = parametersJSON
    }
}

/// The model's answer to one chat request.
public struct ChatTurn: Sendable, Equatable {
    /// The assistant message (text and/or tool calls).
    public var message: ChatMessage
    /// `stop`, `tool_calls`, `length`, ... as the provider said.
    public var finishReason: String?
    /// Prompt tokens the provider counted.
    public var promptTokens: Int
    /// Completion tokens the provider counted.
    public var completionTokens: Int

    /// A turn with `message`.
    public init(message: ChatMessage, finishReason: String?, promptTokens: Int, completionTokens: Int) {
        self.message = message
        self.finishReason = finishReason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    /// Prompt plus completion tokens.
    public var totalTokens: Int { promptTokens &+ completionTokens }
}

/// A chat model: what the agents and Sentient SQL call. The plugin's implementation speaks
/// OpenAI-compatible chat completions to the portal's configured provider.
public protocol ChatModel: Sendable {
    /// One completion of `messages`, offering `tools` (none: plain text).
    func chat(_ messages: [ChatMessage], tools: [ToolSpec]) async throws -> ChatTurn
}
