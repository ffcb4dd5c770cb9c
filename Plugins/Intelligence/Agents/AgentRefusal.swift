import MeltyPluginSDK

/// A request the agents' routes refuse, with the answer to send.
struct AgentRefusal: Error {
    /// The 4xx answer.
    let response: PluginResponse

    /// A refusal answered with `PluginResponse.error(status:code:message:hint:)`.
    init(_ status: Int, _ code: String, _ message: String, hint: String? = nil) {
        response = .error(status: status, code: code, message: message, hint: hint)
    }
}
