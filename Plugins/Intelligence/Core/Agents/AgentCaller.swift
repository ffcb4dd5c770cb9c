/// Who started a run, as the kernel verified them: every SQL tool call runs under this role
/// with these claims (the raw token is never stored).
public struct AgentCaller: Sendable, Equatable {
    /// `authenticated`, `service_role` or `admin` (a kernel admin at aal2, who acts as `service_role`).
    public var role: String
    /// The `sub` claim (nil for API keys).
    public var subject: String?
    /// The verified claims as JSON text.
    public var claimsJSON: String

    /// A caller with these fields.
    public init(role: String, subject: String?, claimsJSON: String) {
        self.role = role
        self.subject = subject
        self.claimsJSON = claimsJSON
    }
}
