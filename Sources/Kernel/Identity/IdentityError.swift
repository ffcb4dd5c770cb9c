/// Why an admin-identity operation was refused, with the HTTP status and stable code the
/// Hub routes answer with (`{code, message, hint}`).
public struct IdentityError: Error, CustomStringConvertible, Sendable {
    /// HTTP status (401, 403, 429, ...).
    public var status: Int
    /// Stable machine-readable code (`invalid_credentials`, `aal2_required`).
    public var code: String
    /// What happened, for a human.
    public var message: String
    /// What to do about it.
    public var hint: String?
    /// Seconds to wait before retrying (`Retry-After`), when that helps.
    public var retryAfterSeconds: Int?
    /// Extra JSON members beside code, message and hint (`field`, `violations`).
    public var extraFields: [String: any Sendable] = [:]

    /// An error with its status, code, message and hint.
    public init(status: Int, code: String, message: String, hint: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }

    /// A 400 naming the field that is missing or malformed.
    static func invalidField(_ field: String, _ message: String) -> IdentityError {
        IdentityError(status: 400, code: "invalid_field", message: message, hint: "fix the field \(field)")
    }

    /// A 500 for broken local state (key files, stored values): the message names the thing to fix.
    static func internalFailure(_ message: String) -> IdentityError {
        IdentityError(status: 500, code: "identity_internal_error", message: message, hint: "see the kernel log")
    }

    /// 401 for a missing, malformed, forged or expired access token, or a revoked session.
    static func unauthenticated(_ message: String) -> IdentityError {
        IdentityError(
            status: 401, code: "unauthenticated", message: message,
            hint: "send Authorization: Bearer <access_token> from POST /v1/admin/login (or refresh it at POST /v1/admin/token)")
    }
}
