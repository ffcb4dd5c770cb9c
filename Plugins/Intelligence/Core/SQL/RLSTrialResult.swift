/// What the trial of a proposal showed: the rows each identity saw with the policies in place.
public struct RLSTrialResult: Sendable, Codable, Equatable {
    /// The rows one identity saw.
    public struct View: Sendable, Codable, Equatable {
        /// `user_a`, `user_b` or `anon`.
        public var identity: String
        /// Rows visible in total.
        public var rows: Int
        /// Visible rows by whose they are: `user_a`, `user_b` (or their tenants), `other`.
        public var sees: [String: Int]
        /// What it should see.
        public var expected: String
        /// Whether it saw exactly that.
        public var ok: Bool
    }

    /// Whether the trial ran (sample rows could be made and the policies created).
    public var tried: Bool
    /// Why it could not run.
    public var error: String?
    /// The synthetic users' ids (they exist only inside the rolled-back trial).
    public var users: [String: String]
    /// The views of user A, user B and anon.
    public var views: [View]
    /// For owner and tenant tables: whether user A was refused writing a row for user B.
    public var crossWriteRefused: Bool?
    /// Whether every view matched and cross writes were refused.
    public var correct: Bool

    enum CodingKeys: String, CodingKey {
        case tried, error, users, views, correct
        case crossWriteRefused = "cross_write_refused"
    }
}
