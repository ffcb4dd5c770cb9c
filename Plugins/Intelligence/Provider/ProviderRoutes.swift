import Foundation
import MeltyJSON
import MeltyPluginSDK
import ModelProvider

/// `/intelligence/v1/provider`: a portal's model provider settings (`GET`, `PUT`, `DELETE`)
/// and `POST /intelligence/v1/provider/test` (one tiny completion to check them). Only the
/// portal's `service_role` key or a kernel admin at AAL2 may use them; no answer ever
/// contains the API key (the settings hold the name of its Vault secret).
struct ProviderRoutes: Sendable {
    /// The portal's context.
    let context: IntelligencePortal

    /// The largest `PUT` body, in bytes.
    static let maxBodyBytes = 64 * 1024

    /// What works when the portal configured no provider.
    static let withoutProvider =
        "No model provider is configured: every Intelligence feature that works without a model keeps working in its deterministic form (Sentient SQL's rule-based diagnoses, the Knowledge Mesh with vectors you supply), and features that need a model say so. PUT base_url and chat_model here to add one."

    /// Answers `request` (its path starts with `/provider`).
    func handle(_ request: PluginRequest) async -> PluginResponse {
        var path = request.path
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        if let refusal = Self.refusal(request.credential) { return refusal }
        switch (request.method, path) {
        case ("GET", "/provider"): return await read()
        case ("PUT", "/provider"): return await write(request)
        case ("DELETE", "/provider"): return await remove()
        case ("POST", "/provider/test"): return await test(request)
        case (_, "/provider"), (_, "/provider/test"):
            return .error(
                status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on /intelligence/v1\(path)",
                hint: "GET, PUT or DELETE /provider; POST /provider/test")
        default:
            return .error(status: 404, code: "not_found", message: "no route \(request.method) /intelligence/v1\(Self.printable(path))")
        }
    }

    /// Why `credential` may not use these routes, or nil when it may.
    static func refusal(_ credential: PluginCredential) -> PluginResponse? {
        credential.refusalUnlessServiceRoleOrAAL2Admin("the provider settings")
    }

    private var store: ProviderSettingsStore { ProviderSettingsStore(owner: context.owner) }

    private func read() async -> PluginResponse {
        do {
            guard let settings = try await store.load() else {
                return .json(JSONValue.object(["configured": false, "message": .string(Self.withoutProvider)]))
            }
            var body = settings.json
            body["configured"] = true
            return .json(JSONValue.object(body))
        } catch {
            return Self.databaseError(error)
        }
    }

    private func write(_ request: PluginRequest) async -> PluginResponse {
        guard request.body.count <= Self.maxBodyBytes else {
            return .error(status: 413, code: "payload_too_large", message: "the settings body is larger than \(Self.maxBodyBytes) bytes")
        }
        guard let object = JSONValue.object(json: request.body) else {
            return .error(
                status: 400, code: "invalid_json", message: "the body must be a JSON object of provider settings",
                hint: "{\"base_url\": \"http://127.0.0.1:8080/v1\", \"chat_model\": \"...\"}")
        }
        let settings: ProviderSettings
        do {
            settings = try ProviderSettings(json: object)
        } catch {
            return .error(status: 400, code: "invalid_request", message: error.message)
        }
        do {
            try await context.host.audit(
                action: "intelligence.provider.update", target: context.portal.name,
                details: ["base_url": .string(settings.baseURL), "chat_model": .string(settings.chatModel), "api_key_secret": JSONValue(settings.apiKeySecret)],
                portal: context.portal)
            try await store.save(settings)
        } catch {
            return Self.databaseError(error)
        }
        context.providerKeys.forget()
        var body = settings.json
        body["configured"] = true
        return .json(JSONValue.object(body))
    }

    private func remove() async -> PluginResponse {
        do {
            try await context.host.audit(action: "intelligence.provider.delete", target: context.portal.name, portal: context.portal)
            let deleted = try await store.delete()
            context.providerKeys.forget()
            return .json(JSONValue.object(["configured": false, "deleted": .bool(deleted), "message": .string(Self.withoutProvider)]))
        } catch {
            return Self.databaseError(error)
        }
    }

    /// One tiny completion (and one embedding when an embedding model is set; and one
    /// completion offering a tool when the body says `{"tool_call": true}`) with the current
    /// settings; the answer says in words what went wrong, if anything.
    private func test(_ request: PluginRequest) async -> PluginResponse {
        var toolCall = false
        if !request.body.isEmpty {
            guard request.body.count <= Self.maxBodyBytes, let object = JSONValue.object(json: request.body) else {
                return .error(status: 400, code: "invalid_json", message: "the body must be empty or a JSON object such as {\"tool_call\": true}")
            }
            if let unknown = object.keys.sorted().first(where: { $0 != "tool_call" }) {
                return .error(status: 400, code: "invalid_request", message: "unknown member \"\(Self.printable(unknown))\"; the only option is tool_call")
            }
            switch object["tool_call"] {
            case nil, .null?: break
            case .bool(let value)?: toolCall = value
            case let other?: return .error(status: 400, code: "invalid_request", message: "tool_call must be true or false, not \(other.kind)")
            }
        }
        let model: PortalModel
        do {
            guard let configured = try await context.model() else {
                return .error(status: 409, code: "provider_not_configured", message: Self.withoutProvider)
            }
            model = configured
        } catch {
            return Self.databaseError(error)
        }
        var body: [String: JSONValue] = ["base_url": .string(model.settings.baseURL), "chat_model": .string(model.settings.chatModel), "stream": .bool(model.settings.stream)]
        do {
            let turn = try await model.client().chat([.system("You are a connectivity check. Answer with the single word: ok"), .user("ping")], tools: [])
            body["ok"] = true
            body["reply"] = .string(String((turn.message.content ?? "").prefix(200)))
            body["finish_reason"] = JSONValue(turn.finishReason)
            body["prompt_tokens"] = JSONValue(turn.promptTokens)
            body["completion_tokens"] = JSONValue(turn.completionTokens)
            if let embeddingModel = model.settings.embeddingModel {
                body["embedding_model"] = .string(embeddingModel)
                let vectors = try await model.embed(["ping"])
                body["embedding_dimensions"] = JSONValue(vectors.first?.count ?? 0)
            }
            body["message"] = "the provider answered"
            if toolCall { body.merge(try await checkToolCall(model), uniquingKeysWith: { $1 }) }
        } catch let error as ProviderError {
            body["ok"] = false
            body["error"] = .string(error.kind.rawValue)
            body["message"] = .string(error.message)
            if let status = error.status { body["provider_status"] = JSONValue(status) }
            if let wait = error.retryAfterSeconds { body["retry_after_seconds"] = JSONValue(wait) }
        } catch {
            body["ok"] = false
            body["error"] = "failed"
            body["message"] = .string("the check failed: \(error)")
        }
        return .json(JSONValue.object(body))
    }

    /// The tool the tool-call check offers.
    static let statusTool = ToolSpec(
        name: "report_status", description: "Reports the connectivity check's status.",
        parametersJSON: #"{"type":"object","properties":{"status":{"type":"string"}},"required":["status"]}"#)

    /// One completion through the agents' ``ChatModel`` offering ``statusTool``: whether the
    /// model called it (agents need a model and server with tool calls).
    private func checkToolCall(_ model: PortalModel) async throws -> [String: JSONValue] {
        let turn = try await model.chat.chat(
            [.system("You are a connectivity check. Call the tool report_status with status \"ok\"; do not answer in text."), .user("ping")], tools: [Self.statusTool])
        let calls = (turn.message.toolCalls ?? []).prefix(8).map { call -> JSONValue in
            ["name": .string(Self.printable(call.name)), "arguments": .string(String(call.arguments.prefix(200)))]
        }
        let supported = turn.message.toolCalls?.contains { $0.name == Self.statusTool.name } ?? false
        return [
            "tool_calls": .array(Array(calls)), "tool_call_supported": .bool(supported),
            "message": .string(
                supported
                    ? "the provider answered and the model called the offered tool"
                    : "the provider answered, but the model did not call the offered tool: agents need a model and server with tool calls"),
        ]
    }

    /// 503 for a database that could not be reached or refused the statement.
    static func databaseError(_ error: any Error) -> PluginResponse {
        var response = PluginResponse.error(
            status: 503, code: "database_unavailable", message: "the provider settings could not be read or stored: \(error)", hint: "retry shortly")
        response.headers.append(("retry-after", "1"))
        return response
    }

    /// `text` shortened to 128 characters without control characters, for messages.
    static func printable(_ text: String) -> String {
        String(String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }).prefix(128))
    }
}
