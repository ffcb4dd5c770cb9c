import MeltyJSON

/// Why a call to the model provider failed, in words that name the provider's URL (never
/// its key) and say what to check.
public struct ProviderError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure.
    public enum Kind: String, Sendable {
        /// 401 or 403: the key is wrong, missing or lacks access.
        case unauthorized
        /// 404: the model's name or the base URL is wrong.
        case notFound = "not_found"
        /// 429: rate limited or out of quota.
        case rateLimited = "rate_limited"
        /// Another 4xx: the provider refused the request as sent.
        case rejected
        /// 5xx: the provider failed.
        case serverError = "server_error"
        /// No answer within the timeout.
        case timeout
        /// The provider could not be reached (DNS, connection refused, TLS).
        case unreachable
        /// The kernel's egress policy refused the provider's host.
        case egressRefused = "egress_refused"
        /// The answer is not what the OpenAI API specifies (bad JSON, truncated stream).
        case malformed
        /// The answer is larger than allowed.
        case tooLarge = "too_large"
        /// The request could not be built (a tool's schema is not JSON, no embedding model).
        case invalidRequest = "invalid_request"
    }

    /// What kind of failure.
    public var kind: Kind
    /// The provider's HTTP status, when it answered.
    public var status: Int?
    /// Seconds the provider asked to wait (`Retry-After`), on 429 and 503.
    public var retryAfterSeconds: Int?
    /// The whole explanation.
    public var message: String

    /// A failure of `kind` explained by `message`.
    public init(_ kind: Kind, status: Int? = nil, retryAfterSeconds: Int? = nil, message: String) {
        self.kind = kind
        self.status = status
        self.retryAfterSeconds = retryAfterSeconds
        self.message = message
    }

    /// The explanation.
    public var description: String { message }

    /// The longest part of a provider's own error message quoted.
    static let quotedLimit = 300

    /// The error for a non-2xx answer of the provider at `url`; `secret` (the API key) is
    /// removed from anything quoted.
    public static func from(response: ProviderHTTPResponse, url: String, secret: String?) -> ProviderError {
        let status = response.status
        let detail = providerMessage(response.body, secret: secret).map { ": \($0)" } ?? ""
        let retryAfter = response.header("retry-after").flatMap { Int($0.trimmingWhitespace()) }.flatMap { (0...86_400).contains($0) ? $0 : nil }
        switch status {
        case 401, 403:
            return ProviderError(
                .unauthorized, status: status,
                message:
                    "the model provider at \(url) refused the API key (HTTP \(status))\(detail); check the Vault secret the portal's provider settings name (api_key_secret)"
            )
        case 404:
            return ProviderError(
                .notFound, status: status, message: "the model provider at \(url) answered 404\(detail); check the model's name and the base URL (it usually ends in /v1)")
        case 429:
            let wait = retryAfter.map { "; it asks to retry after \($0) s" } ?? ""
            return ProviderError(
                .rateLimited, status: status, retryAfterSeconds: retryAfter,
                message: "the model provider at \(url) is rate limiting this portal (HTTP 429)\(detail)\(wait)")
        case 500...599:
            let wait = retryAfter.map { "; it asks to retry after \($0) s" } ?? ""
            return ProviderError(
                .serverError, status: status, retryAfterSeconds: retryAfter, message: "the model provider at \(url) failed (HTTP \(status))\(detail)\(wait)")
        default:
            return ProviderError(.rejected, status: status, message: "the model provider at \(url) refused the request (HTTP \(status))\(detail)")
        }
    }

    /// The provider's own error message in `body` (`{"error": {"message"}}` as OpenAI,
    /// `{"error": "..."}` as Ollama, `[{"error": {...}}]` as Gemini), shortened and without
    /// `secret`, or the start of a non-JSON body.
    static func providerMessage(_ body: [UInt8], secret: String?) -> String? {
        guard !body.isEmpty else { return nil }
        var text: String?
        var value = JSONValue(json: body.prefix(256 * 1024))
        if case .array(let items)? = value { value = items.first }
        if let object = value?.objectValue {
            switch object["error"] {
            case .string(let message)?: text = message
            case .object(let error)?: text = error["message"]?.stringValue ?? error["code"]?.stringValue
            default: text = object["message"]?.stringValue ?? object["detail"]?.stringValue
            }
        }
        if text == nil, value == nil { text = String(decoding: body.prefix(quotedLimit), as: UTF8.self) }
        return text.map { clean($0, secret: secret) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `text` on one line, at most ``quotedLimit`` characters, without control characters
    /// or `secret`.
    static func clean(_ text: String, secret: String?) -> String {
        var text = text
        if let secret, secret.count >= 4 { text = text.replacingAll(secret, with: "[redacted]") }
        let scalars = text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) }
        var cleaned = String(scalars).trimmingWhitespace()
        if cleaned.count > quotedLimit { cleaned = String(cleaned.prefix(quotedLimit)) + "…" }
        return cleaned
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and line breaks.
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }

    /// Every occurrence of `target` replaced by `replacement` (Foundation-free).
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[rest.startIndex..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
