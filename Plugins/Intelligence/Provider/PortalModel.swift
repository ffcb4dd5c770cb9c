import Foundation
import MeltyJSON
import MeltyPluginSDK
import ModelProvider

/// A portal's model provider as the other parts use it (Sentient SQL's proposals, the
/// Knowledge Mesh's embeddings, the agents). Calls go through the kernel's egress
/// (`http_fetch`) to the provider the portal configured, with the API key read from the
/// portal's Vault; every call is counted for the portal (`llm_requests`, `llm_tokens`).
struct PortalModel: Sendable {
    /// The portal's context.
    let context: IntelligencePortal
    /// The portal's provider settings.
    let settings: ProviderSettings

    /// The chat model itself (tool calls included), for the agents: streams when the
    /// portal's settings say so.
    var chat: any ChatModel { PortalChatModel(model: self) }

    /// The model's answer to one prompt.
    struct Reply: Sendable {
        /// The assistant's text.
        var text: String
        /// Prompt plus completion tokens, as the provider reported them.
        var tokens: Int
    }

    /// One chat completion: `system` and `user` messages in, the assistant's text out.
    func complete(system: String, user: String) async throws -> Reply {
        let turn = try await client().chat([.system(system), .user(user)], tools: [])
        return Reply(text: turn.message.content ?? "", tokens: turn.totalTokens)
    }

    /// Embeddings of `texts`, in order (empty in, empty out).
    func embed(_ texts: [String]) async throws -> [[Float]] {
        guard !texts.isEmpty else { return [] }
        return try await client().embed(texts)
    }

    /// A client with the current API key; a refused key is forgotten so the next call reads
    /// the Vault again.
    func client() async throws -> ForgettingClient {
        let key = try await apiKey()
        let host = context.host
        let portal = context.portal
        let client = OpenAICompatibleClient(
            endpoint: settings.endpoint(apiKey: key), transport: HostProviderTransport(host: host, portal: portal),
            onUsage: { usage in
                host.count("llm_requests", by: 1, portal: portal)
                host.count("llm_tokens", by: Int64(clamping: usage.totalTokens), portal: portal)
            })
        return ForgettingClient(client: client, keys: context.providerKeys)
    }

    /// The API key from the portal's Vault (nil when the settings name no secret).
    func apiKey() async throws -> String? {
        guard let secret = settings.apiKeySecret else { return nil }
        let portal = context.portal.name
        if let cached = context.providerKeys.value(secret: secret) { return cached }
        let reply: [UInt8]
        do {
            reply = try await context.host.callService(
                "vault", major: 1, method: "get", arguments: ["name": .string(secret)],
                caller: PluginCredential.plugin("intelligence", grant: "the portal's model provider setting names this secret"), portal: context.portal)
        } catch {
            throw ProviderError(
                .unauthorized,
                message:
                    "the API key secret \"\(secret)\" could not be read from portal \"\(portal)\"'s Vault (\(error)); create it with POST /p/\(portal)/vault/v1/secrets, enable the vault plugin for the portal, or set api_key_secret to null for a keyless server"
            )
        }
        guard let value = JSONValue.object(json: reply)?["value"]?.stringValue, !value.isEmpty else {
            throw ProviderError(.unauthorized, message: "the Vault's answer for the API key secret \"\(secret)\" has no value")
        }
        context.providerKeys.store(secret: secret, value: value)
        return value
    }
}

/// An ``OpenAICompatibleClient`` that forgets the cached key when the provider refuses it.
struct ForgettingClient: Sendable {
    /// The client.
    let client: OpenAICompatibleClient
    /// The cache of the key it uses.
    let keys: ProviderKeyCache

    /// ``OpenAICompatibleClient/chat(_:tools:)``.
    func chat(_ messages: [ChatMessage], tools: [ToolSpec]) async throws -> ChatTurn {
        try await forgettingRefusedKey { try await client.chat(messages, tools: tools) }
    }

    /// ``OpenAICompatibleClient/embed(_:)``.
    func embed(_ texts: [String]) async throws -> [[Float]] {
        try await forgettingRefusedKey { try await client.embed(texts) }
    }

    private func forgettingRefusedKey<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ProviderError where error.kind == .unauthorized {
            keys.forget()
            throw error
        }
    }
}

/// The portal's chat model for the agents: each call reads the current key (cached) and
/// goes through the kernel's egress.
struct PortalChatModel: ChatModel {
    /// The portal's model.
    let model: PortalModel

    /// One completion of `messages` offering `tools`.
    func chat(_ messages: [ChatMessage], tools: [ToolSpec]) async throws -> ChatTurn {
        try await model.client().chat(messages, tools: tools)
    }
}

extension IntelligencePortal {
    /// The portal's configured provider, or nil when none is configured (every feature then
    /// works in its deterministic form and says so). Throws when the settings cannot be read.
    func model() async throws -> PortalModel? {
        guard let settings = try await ProviderSettingsStore(owner: owner).load() else { return nil }
        return PortalModel(context: self, settings: settings)
    }
}
