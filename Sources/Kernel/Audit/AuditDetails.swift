import MeltyJSON

extension CanonicalJSON {
    /// ``CanonicalJSON/init(_:)`` for audit details: a value without a JSON form is an ``AuditError``.
    static func auditDetails(_ value: Any?) throws(AuditError) -> CanonicalJSON {
        do { return try CanonicalJSON(value) } catch { throw AuditError("\(error)") }
    }

    /// ``CanonicalJSON/init(parsing:)`` for audit details: text that is not JSON is an ``AuditError``.
    static func auditDetails(parsing text: String) throws(AuditError) -> CanonicalJSON {
        do { return try CanonicalJSON(parsing: text) } catch { throw AuditError("\(error)") }
    }
}
