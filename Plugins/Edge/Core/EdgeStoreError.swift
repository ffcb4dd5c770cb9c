import MeltyPostgres

/// Why the function store could not do what was asked. ``code`` and ``hint`` are what an
/// HTTP error body carries; ``unavailable(_:)`` is a 503 (try again), the others 4xx or 500.
public enum EdgeStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The portal has no function of that name.
    case functionNotFound(portal: String, name: String)
    /// The function has no such version.
    case versionNotFound(portal: String, name: String, version: Int)
    /// There is no earlier version to roll back to.
    case noPreviousVersion(portal: String, name: String)
    /// A value cannot be stored (NUL byte, out of range); refused before reaching Postgres.
    case invalidInput(String)
    /// The system database cannot be reached or its pool is saturated: try again shortly.
    case unavailable(String)
    /// Postgres refused a statement.
    case database(String)
    /// A stored row cannot be read back (damaged archive or manifest).
    case corruptRecord(String)

    /// The error's code (`function_not_found`, …).
    public var code: String {
        switch self {
        case .functionNotFound: "function_not_found"
        case .versionNotFound: "version_not_found"
        case .noPreviousVersion: "no_previous_version"
        case .invalidInput: "invalid_input"
        case .unavailable: "unavailable"
        case .database: "database_error"
        case .corruptRecord: "corrupt_record"
        }
    }

    /// What to do about it.
    public var hint: String? {
        switch self {
        case .functionNotFound: "list the portal's functions with GET /functions, or deploy this one first"
        case .versionNotFound: "list the function's versions to pick one that exists"
        case .noPreviousVersion: "name the version to roll back to"
        case .unavailable: "try again in a moment"
        case .invalidInput, .database, .corruptRecord: nil
        }
    }

    /// The message.
    public var description: String {
        switch self {
        case .functionNotFound(let portal, let name): "portal \(portal) has no function \(name)"
        case .versionNotFound(let portal, let name, let version): "function \(name) of portal \(portal) has no version \(version)"
        case .noPreviousVersion(let portal, let name): "function \(name) of portal \(portal) has no version before the active one"
        case .invalidInput(let message): message
        case .unavailable(let message): "the system database is unavailable: \(message)"
        case .database(let message): "the function store failed: \(message)"
        case .corruptRecord(let message): "a stored function cannot be read: \(message)"
        }
    }

    /// A pool or Postgres failure as a store error.
    static func from(_ error: any Error) -> EdgeStoreError {
        switch error {
        case let error as EdgeStoreError: error
        case let error as PostgresPoolError: .unavailable("\(error)")
        case let error as PostgresError where error.isConnectionFailure: .unavailable("\(error)")
        default: .database("\(error)")
        }
    }
}
