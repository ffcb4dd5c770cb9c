import Foundation
import MeltyJSON
import ModelProvider

/// A portal's model provider settings (`PUT /intelligence/v1/provider`), validated. The API
/// key is not here: only the NAME of the portal's Vault secret that holds it.
struct ProviderSettings: Sendable, Equatable {
    /// The OpenAI-compatible API's base URL (`http`/`https`, no credentials, query or fragment).
    var baseURL: String
    /// The chat model's name.
    var chatModel: String
    /// The embedding model's name, when the portal embeds through the provider.
    var embeddingModel: String?
    /// The name of the Vault secret holding the API key; nil for keyless local servers.
    var apiKeySecret: String?
    /// Whether chat requests stream (SSE).
    var stream: Bool
    /// How long one request may take, in seconds (1...600).
    var timeoutSeconds: Int
    /// `max_tokens` for chat requests (1...1,000,000); nil sends none.
    var maxTokens: Int?

    /// The members `PUT` accepts.
    static let members: Set<String> = ["base_url", "chat_model", "embedding_model", "api_key_secret", "stream", "timeout_seconds", "max_tokens"]
    /// The default `timeout_seconds`.
    static let defaultTimeoutSeconds = 60
    /// The longest model name.
    static let maxModelLength = 256

    /// A field of a `PUT` body that is wrong, and why.
    struct Invalid: Error, Sendable {
        /// What is wrong, naming the field.
        var message: String
    }

    /// Settings from a `PUT` body; throws ``Invalid`` naming the first wrong field.
    init(json object: [String: JSONValue]) throws(Invalid) {
        if let unknown = object.keys.sorted().first(where: { !Self.members.contains($0) }) {
            throw Invalid(message: "unknown member \"\(Self.printable(unknown))\"; the settings are \(Self.members.sorted().joined(separator: ", "))")
        }
        baseURL = try Self.baseURL(object["base_url"])
        chatModel = try Self.modelName(object["chat_model"], field: "chat_model", required: true) ?? ""
        embeddingModel = try Self.modelName(object["embedding_model"], field: "embedding_model", required: false)
        apiKeySecret = try Self.secretName(object["api_key_secret"])
        switch object["stream"] {
        case nil, .null?: stream = false
        case .bool(let value)?: stream = value
        case let other?: throw Invalid(message: "stream must be true or false, not \(other.kind)")
        }
        timeoutSeconds = try Self.integer(object["timeout_seconds"], field: "timeout_seconds", range: 1...600) ?? Self.defaultTimeoutSeconds
        maxTokens = try Self.integer(object["max_tokens"], field: "max_tokens", range: 1...1_000_000)
    }

    /// Settings as stored.
    init(baseURL: String, chatModel: String, embeddingModel: String?, apiKeySecret: String?, stream: Bool, timeoutSeconds: Int, maxTokens: Int?) {
        self.baseURL = baseURL
        self.chatModel = chatModel
        self.embeddingModel = embeddingModel
        self.apiKeySecret = apiKeySecret
        self.stream = stream
        self.timeoutSeconds = timeoutSeconds
        self.maxTokens = maxTokens
    }

    /// The settings as the routes answer them (no secret: the key's Vault name only).
    var json: [String: JSONValue] {
        [
            "base_url": .string(baseURL), "chat_model": .string(chatModel), "embedding_model": JSONValue(embeddingModel),
            "api_key_secret": JSONValue(apiKeySecret), "stream": .bool(stream), "timeout_seconds": JSONValue(timeoutSeconds),
            "max_tokens": maxTokens.map { JSONValue($0) } ?? .null,
        ]
    }

    /// The endpoint for these settings with `apiKey`.
    func endpoint(apiKey: String?) -> ProviderEndpoint {
        ProviderEndpoint(
            baseURL: baseURL, apiKey: apiKey, chatModel: chatModel, embeddingModel: embeddingModel, stream: stream, timeoutSeconds: timeoutSeconds,
            maxTokens: maxTokens)
    }

    /// `base_url`: an absolute `http(s)` URL with a host, without user, password, query or
    /// fragment, at most 2,048 characters of printable ASCII.
    static func baseURL(_ value: JSONValue?) throws(Invalid) -> String {
        guard case .string(let text)? = value, !text.isEmpty else {
            throw Invalid(message: "base_url is required: the OpenAI-compatible API's base URL, e.g. http://127.0.0.1:8080/v1")
        }
        guard text.utf8.count <= 2_048, text.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw Invalid(message: "base_url must be at most 2048 printable ASCII characters without spaces")
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = components.host, !host.isEmpty
        else {
            throw Invalid(message: "base_url must be an absolute http:// or https:// URL with a host, e.g. https://api.openai.com/v1")
        }
        guard components.user == nil, components.password == nil else {
            throw Invalid(message: "base_url must not contain credentials: store the API key in the portal's Vault and name it in api_key_secret")
        }
        guard components.query == nil, components.fragment == nil else {
            throw Invalid(message: "base_url must not have a query or a fragment")
        }
        if let port = components.port, !(1...65_535).contains(port) {
            throw Invalid(message: "base_url has a port outside 1...65535")
        }
        var url = text
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }

    /// A model name: 1...256 characters without control characters.
    static func modelName(_ value: JSONValue?, field: String, required: Bool) throws(Invalid) -> String? {
        switch value {
        case nil, .null?:
            if required { throw Invalid(message: "\(field) is required: the model's name as the provider knows it") }
            return nil
        case .string(let name)?:
            guard !name.isEmpty, name.count <= maxModelLength, name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
                throw Invalid(message: "\(field) must be 1 to \(maxModelLength) characters without control characters")
            }
            return name
        case let other?:
            throw Invalid(message: "\(field) must be a string, not \(other.kind)")
        }
    }

    /// `api_key_secret`: a Vault secret name (1...128 of `A-Z a-z 0-9 _ . -`) or null.
    static func secretName(_ value: JSONValue?) throws(Invalid) -> String? {
        switch value {
        case nil, .null?:
            return nil
        case .string(let name)?:
            let allowed = name.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F || byte == 0x2E
                    || byte == 0x2D
            }
            guard !name.isEmpty, name.utf8.count <= 128, allowed else {
                throw Invalid(message: "api_key_secret must be the name of a Vault secret of this portal: 1 to 128 of A-Z a-z 0-9 _ . - (not the key itself)")
            }
            return name
        case let other?:
            throw Invalid(message: "api_key_secret must be a string (a Vault secret's name), not \(other.kind)")
        }
    }

    /// An optional whole number in `range`.
    static func integer(_ value: JSONValue?, field: String, range: ClosedRange<Int>) throws(Invalid) -> Int? {
        switch value {
        case nil, .null?:
            return nil
        case .number(let number)?:
            guard number.isFinite, number >= Double(range.lowerBound), number <= Double(range.upperBound), let exact = Int(exactly: number) else {
                throw Invalid(message: "\(field) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return exact
        case let other?:
            throw Invalid(message: "\(field) must be a number, not \(other.kind)")
        }
    }

    /// `text` shortened to 64 characters without control characters, for messages.
    static func printable(_ text: String) -> String {
        String(String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }).prefix(64))
    }
}
