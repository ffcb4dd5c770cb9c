/// Whose memories a note belongs to: a signed-in user's own notes, or the shared notes of
/// `service_role` and admin runs. The classes never mix, so a user cannot plant a note an
/// admin run recalls, nor read one.
public enum AgentMemoryClass: String, Sendable {
    /// Written by a run of a signed-in user, recalled only by that user's runs.
    case user
    /// Written by a `service_role` or admin run, recalled only by such runs.
    case admin
}
