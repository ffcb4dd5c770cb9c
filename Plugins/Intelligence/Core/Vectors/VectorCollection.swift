/// One collection as Postgres describes it: its name, shape and who may read it.
public struct VectorCollection: Sendable, Equatable {
    /// Who may query a collection (writes always need `service_role` or an AAL2 admin).
    public enum ReadAccess: String, Sendable, CaseIterable {
        /// Only `service_role` keys and AAL2 admins (the default).
        case serviceRole = "service_role"
        /// Signed-in users too.
        case authenticated
        /// Anyone with the portal's anon key too.
        case anon

        /// Whether a caller with the database `role` may read.
        public func allows(role: String) -> Bool {
            switch self {
            case .serviceRole: role == "service_role"
            case .authenticated: role == "service_role" || role == "authenticated"
            case .anon: role == "service_role" || role == "authenticated" || role == "anon"
            }
        }
    }

    /// The distance metrics a collection may use (the index's `VectorMetric` raw values).
    public static let metrics = ["cosine", "l2", "inner_product"]

    /// The identity of this incarnation of the collection (a dropped and recreated
    /// collection gets a new one, so an old snapshot is never mistaken for it).
    public var uid: Int64
    /// The collection's name.
    public var name: String
    /// Numbers per vector.
    public var dimension: Int
    /// `cosine`, `l2` or `inner_product`.
    public var metric: String
    /// Who may query it.
    public var readAccess: ReadAccess
    /// Live entries.
    public var count: Int
    /// When it was created (ISO 8601 from Postgres).
    public var created: String
    /// Deletions up to this change number were pruned from the deletion log: a snapshot
    /// older than that cannot be brought up to date and is rebuilt.
    public var prunedThrough: Int64

    /// A collection description.
    public init(
        uid: Int64, name: String, dimension: Int, metric: String, readAccess: ReadAccess, count: Int = 0, created: String = "", prunedThrough: Int64 = 0
    ) {
        self.uid = uid
        self.name = name
        self.dimension = dimension
        self.metric = metric
        self.readAccess = readAccess
        self.count = count
        self.created = created
        self.prunedThrough = prunedThrough
    }
}
