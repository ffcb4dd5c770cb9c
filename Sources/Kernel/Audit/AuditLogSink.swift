/// The ``AuditSink`` that writes plugins' audit calls into the hash-chained log, each in
/// a transaction of its own on the system database's thread.
public struct AuditLogSink: AuditSink {
    /// Where entries are appended.
    public let database: SystemDatabase

    /// A sink appending to `database`.
    public init(database: SystemDatabase) {
        self.database = database
    }

    /// Appends and commits one entry; throws ``AuditError`` for details that are not a
    /// JSON object, ``PostgresError`` when the database is unavailable.
    public func append(actor: String, action: String, target: String, portal: String?, detailsJSON: String) throws {
        let details = try CanonicalJSON(parsing: detailsJSON.isEmpty ? "{}" : detailsJSON)
        guard case .object = details else { throw AuditError("audit details must be a JSON object") }
        _ = try database.withConnectionSync { connection in
            try AuditChain.appendCommitting(on: connection, actor: actor, action: action, target: target, portal: portal, details: details)
        }
    }
}
