import Foundation
import MeltyPluginSDK
import ModelProvider

/// A portal's model provider as the other parts use it (Sentient SQL's proposals, the
/// Knowledge Mesh's embeddings). Calls go through the kernel's egress (`http_fetch`) to the
/// provider the portal configured; tokens are counted for the portal.
struct PortalModel: Sendable {
    /// The chat model itself (tool calls included), for the agents.
    var chat: any ChatModel {
        UnconfiguredChatModel()
    }

    /// The model's answer to one prompt.
    struct Reply: Sendable {
        /// The assistant's text.
        var text: String
        /// Prompt plus completion tokens, as the provider reported them.
        var tokens: Int
    }

    /// One chat completion: `system` and `user` messages in, the assistant's text out.
    func complete(system: String, user: String) async throws -> Reply {
        throw PluginError.unavailable("no model provider is configured")
    }

    /// Embeddings of `texts`, in order.
    func embed(_ texts: [String]) async throws -> [[Float]] {
        throw PluginError.unavailable("no model provider is configured")
    }
}

extension IntelligencePortal {
    /// The portal's configured provider, or nil when none is configured (every feature then
    /// works in its deterministic form and says so).
    func model() async throws -> PortalModel? { nil }
}

/// Stands in until the provider layer is wired: refuses every call.
private struct UnconfiguredChatModel: ChatModel {
    func chat(_ messages: [ChatMessage], tools: [ToolSpec]) async throws -> ChatTurn {
        throw PluginError.unavailable("no model provider is configured")
    }
}
