import Foundation
import MeltyEd25519
import MeltyJSON

/// The hash-chained, append-only audit log in the system database (`meltybase.audit_log`)
/// and its signed checkpoints (`meltybase.audit_checkpoints`). See `docs/audit-log.md`.
///
/// Every call takes a ``PostgresConnection`` so it can share the caller's transaction;
/// get one from ``SystemDatabase/withConnection(_:)``.
public enum AuditChain {
    /// SQL rendering the timestamptz `expression` as ``AuditEntry/at`` is written.
    static func timestamp(_ expression: String) -> String {
        #"to_char(\#(expression) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#
    }
    static let entryColumns = "seq, \(timestamp("at")) AS at, actor, action, target, portal, details::text AS details, prev_hash, hash"

    // MARK: Appending

    /// Appends one entry inside the transaction the caller has open on `connection`
    /// (`BEGIN` ... `COMMIT`), so the entry commits or rolls back with the caller's work.
    ///
    /// Takes a transaction-scoped advisory lock, so concurrent appenders (any process)
    /// queue until this transaction ends: keep the transaction short after this call.
    /// If the append fails, the caller's transaction is left usable (a savepoint is rolled
    /// back). Throws ``AuditError`` outside a transaction or for details JSON cannot hold.
    /// Under REPEATABLE READ or SERIALIZABLE, an append another transaction committed after
    /// this one's snapshot makes this append fail (SQLSTATE 23505) rather than fork the
    /// chain: retry the transaction.
    @discardableResult
    public static func append(
        on connection: PostgresConnection, actor: String, action: String, target: String, portal: String? = nil,
        details: [String: Any] = [:]
    ) async throws -> AuditEntry {
        try await append(on: connection, actor: actor, action: action, target: target, portal: portal, details: CanonicalJSON.auditDetails(details))
    }

    /// The same append, with details already converted (``CanonicalJSON/init(_:)``).
    @discardableResult
    public static func append(
        on connection: PostgresConnection, actor: String, action: String, target: String, portal: String? = nil,
        details: CanonicalJSON
    ) async throws -> AuditEntry {
        guard isInTransactionBlock(connection) else {
            throw AuditError("AuditChain.append must run inside a transaction (BEGIN first), or use AuditChain.appendCommitting")
        }
        return try await appendInTransaction(on: connection, actor: actor, action: action, target: target, portal: portal, details: details)
    }

    /// Takes the append lock for the rest of the transaction, then reads the time and the
    /// chain's head (seq 0 and the genesis hash for an empty log). The lock is its own
    /// statement: the head is read with a snapshot taken after the previous holder committed.
    private static func lockAndReadHead(on connection: PostgresConnection) async throws -> (now: String, seq: Int64, hash: String) {
        try await connection.query(lockSQL, [String(AuditSchema.appendLockKey)])
        return try head(from: try await connection.query(headSQL))
    }

    static let lockSQL = "SELECT pg_advisory_xact_lock($1)"
    static let headSQL = """
        SELECT \(timestamp("clock_timestamp()")) AS now,
               (SELECT seq FROM meltybase.audit_log ORDER BY seq DESC LIMIT 1) AS seq,
               (SELECT hash FROM meltybase.audit_log ORDER BY seq DESC LIMIT 1) AS hash
        """
    static let insertSQL = """
        INSERT INTO meltybase.audit_log (seq, at, actor, action, target, portal, details, prev_hash, hash)
        VALUES ($1, $2::timestamptz, $3, $4, $5, $6, $7::jsonb, $8, $9)
        """

    private static func head(from rows: PostgresRows) throws -> (now: String, seq: Int64, hash: String) {
        guard let now = rows.value("now") else { throw AuditError("the database returned no time") }
        return (now, rows.value("seq").flatMap { Int64($0) } ?? 0, rows.value("hash") ?? AuditEntry.genesisHash)
    }

    /// Sets `entry.hash` from its fields (a NUL in a text field becomes U+FFFD first:
    /// Postgres text cannot hold NUL, and the hash must cover exactly what is stored) and
    /// returns the insert's parameters.
    private static func sealed(_ entry: inout AuditEntry) -> [String?] {
        entry.actor = CanonicalJSON.storable(entry.actor)
        entry.action = CanonicalJSON.storable(entry.action)
        entry.target = CanonicalJSON.storable(entry.target)
        entry.portal = entry.portal.map(CanonicalJSON.storable)
        entry.hash = entry.computedHash
        return [String(entry.seq), entry.at, entry.actor, entry.action, entry.target, entry.portal, entry.details.text, entry.prevHash, entry.hash]
    }

    /// Sets `entry.hash` and inserts it.
    private static func insert(_ entry: inout AuditEntry, on connection: PostgresConnection) async throws {
        try await connection.query(insertSQL, sealed(&entry))
    }

    /// The append itself; the caller guarantees an open transaction.
    private static func appendInTransaction(
        on connection: PostgresConnection, actor: String, action: String, target: String, portal: String?, details: CanonicalJSON
    ) async throws -> AuditEntry {
        try await connection.query("SAVEPOINT meltybase_audit_append")
        do {
            let head = try await lockAndReadHead(on: connection)
            var entry = AuditEntry(
                seq: head.seq + 1, at: head.now, actor: actor, action: action,
                target: target, portal: portal, details: details,
                prevHash: head.hash, hash: "")
            try await insert(&entry, on: connection)
            try await connection.query("RELEASE SAVEPOINT meltybase_audit_append")
            return entry
        } catch {
            _ = try? await connection.query("ROLLBACK TO SAVEPOINT meltybase_audit_append")
            _ = try? await connection.query("RELEASE SAVEPOINT meltybase_audit_append")
            throw error
        }
    }

    /// Appends one entry in a transaction of its own (committed when this returns). Call it
    /// outside `BEGIN` ... `COMMIT`; inside one, use `append(on:...)`.
    @discardableResult
    public static func appendCommitting(
        on connection: PostgresConnection, actor: String, action: String, target: String, portal: String? = nil,
        details: CanonicalJSON = .object([:])
    ) async throws -> AuditEntry {
        try await appendAllCommitting(on: connection, entries: [PendingEntry(actor: actor, action: action, target: target, portal: portal, details: details)])[0]
    }

    /// One entry of ``appendAllCommitting(on:entries:)``.
    public struct PendingEntry: Sendable {
        /// Who acted.
        public var actor: String
        /// What was done.
        public var action: String
        /// What it was done to.
        public var target: String
        /// The portal, when the action belongs to one.
        public var portal: String?
        /// Canonical details (an object).
        public var details: CanonicalJSON
    }

    /// Appends `entries` in order in one transaction of its own (one lock, one head read,
    /// one commit): group commit for appenders that arrive together. All or none are stored.
    /// Two round trips whatever the number of entries: `BEGIN`, the lock and the head read in
    /// one pipeline (the head is still its own statement, read after the lock), then every
    /// insert and the `COMMIT` in another.
    @discardableResult
    public static func appendAllCommitting(on connection: PostgresConnection, entries: [PendingEntry]) async throws -> [AuditEntry] {
        guard !entries.isEmpty else { return [] }
        // A failed pipeline has rolled its transaction back already.
        let opened = try await connection.pipeline([("BEGIN", []), (lockSQL, [String(AuditSchema.appendLockKey)]), (headSQL, [])])
        do {
            let head = try head(from: opened[2])
            var seq = head.seq
            var previous = head.hash
            var stored: [AuditEntry] = []
            var steps: [(sql: String, parameters: [String?])] = []
            for pending in entries {
                seq += 1
                var entry = AuditEntry(
                    seq: seq, at: head.now, actor: pending.actor, action: pending.action, target: pending.target,
                    portal: pending.portal, details: pending.details, prevHash: previous, hash: "")
                steps.append((insertSQL, sealed(&entry)))
                previous = entry.hash
                stored.append(entry)
            }
            steps.append(("COMMIT", []))
            _ = try await connection.pipeline(steps)
            return stored
        } catch {
            if connection.inTransaction { _ = try? await connection.execute("ROLLBACK") }
            throw error
        }
    }

    /// Appends one entry in its own transaction on a pooled connection.
    @discardableResult
    public static func append(
        to database: SystemDatabase, actor: String, action: String, target: String, portal: String? = nil,
        details: [String: Any] = [:]
    ) async throws -> AuditEntry {
        let canonical = try CanonicalJSON.auditDetails(details)
        return try await database.withConnection { connection in
            try await appendCommitting(on: connection, actor: actor, action: action, target: target, portal: portal, details: canonical)
        }
    }

    /// Whether `connection` is inside `BEGIN` ... `COMMIT` (libpq's transaction status,
    /// which the server reports with every answer: no round trip).
    static func isInTransactionBlock(_ connection: PostgresConnection) -> Bool {
        connection.inTransaction
    }

    // MARK: Reading

    /// The last entry's seq and hash, or `nil` for an empty log.
    public static func head(on connection: PostgresConnection) async throws -> (seq: Int64, hash: String)? {
        let rows = try await connection.query("SELECT seq, hash FROM meltybase.audit_log ORDER BY seq DESC LIMIT 1")
        guard let seq = rows.value("seq").flatMap({ Int64($0) }), let hash = rows.value("hash") else { return nil }
        return (seq, hash)
    }

    /// Entries in seq order for `GET /v1/audit`: at most `limit` (1...1000) entries with seq
    /// greater than `afterSeq`, filtered by exact `action` and `actor` and by time
    /// (`since` inclusive, `until` exclusive). The next page starts after the last seq returned.
    /// Filters are bound as parameters, never spliced into the SQL.
    public static func query(
        on connection: PostgresConnection, action: String? = nil, actor: String? = nil, since: Date? = nil,
        until: Date? = nil, limit: Int = 100, afterSeq: Int64 = 0
    ) async throws -> [AuditEntry] {
        let rows = try await connection.query(
            """
            SELECT \(entryColumns) FROM meltybase.audit_log
            WHERE seq > $1
              AND ($2::text IS NULL OR action = $2)
              AND ($3::text IS NULL OR actor = $3)
              AND ($4::timestamptz IS NULL OR at >= $4::timestamptz)
              AND ($5::timestamptz IS NULL OR at < $5::timestamptz)
            ORDER BY seq
            LIMIT $6
            """,
            [
                String(afterSeq), action, actor, since.map(AuditEntry.timestamp(from:)), until.map(AuditEntry.timestamp(from:)),
                String(min(max(limit, 1), 1000)),
            ])
        return try entries(from: rows)
    }

    /// Decodes rows selected with ``entryColumns``.
    static func entries(from rows: PostgresRows) throws -> [AuditEntry] {
        try rows.rows.indices.map { try entry(rows, $0) }
    }

    /// Row `index` of a result selected with ``entryColumns``. Fields the schema makes
    /// NOT NULL read as empty strings if missing, which fails the hash check rather than crash.
    static func entry(_ rows: PostgresRows, _ index: Int) throws -> AuditEntry {
        let text = { (column: String) in rows.value(column, row: index) ?? "" }
        return AuditEntry(
            seq: Int64(text("seq")) ?? 0, at: text("at"), actor: text("actor"), action: text("action"),
            target: text("target"), portal: rows.value("portal", row: index),
            details: try CanonicalJSON.auditDetails(parsing: text("details")), prevHash: text("prev_hash"), hash: text("hash"))
    }

    // MARK: Checkpoints

    /// Signs the current head with `signingKey` and stores the checkpoint. Returns `nil`
    /// when the log is empty, or when `onlyIfMoved` and the latest checkpoint already
    /// covers the head. Needs no transaction: the head it signs is committed.
    @discardableResult
    public static func checkpoint(
        on connection: PostgresConnection, signingKey: Ed25519.KeyPair, onlyIfMoved: Bool = true
    ) async throws -> AuditCheckpoint? {
        guard let head = try await head(on: connection) else { return nil }
        if onlyIfMoved, let latest = try await latestCheckpoint(on: connection), latest.seq >= head.seq { return nil }
        let signature = try Ed25519.sign(AuditCheckpoint.signedMessage(seq: head.seq, headHash: head.hash), secretKey: signingKey.secretKey)
        let rows = try await connection.query(
            """
            INSERT INTO meltybase.audit_checkpoints (seq, head_hash, signature, public_key) VALUES ($1, $2, $3, $4)
            RETURNING id, \(timestamp("at")) AS at
            """, [String(head.seq), head.hash, ByteEncoding.hex(signature), ByteEncoding.hex(signingKey.publicKey)])
        return AuditCheckpoint(
            id: Int64(rows.value("id") ?? "") ?? 0, at: rows.value("at") ?? "", seq: head.seq, headHash: head.hash,
            signature: ByteEncoding.hex(signature), publicKey: ByteEncoding.hex(signingKey.publicKey))
    }

    /// The checkpoint with the highest seq (the newest among equals), or `nil`.
    public static func latestCheckpoint(on connection: PostgresConnection) async throws -> AuditCheckpoint? {
        let rows = try await connection.query(
            """
            SELECT id, \(timestamp("at")) AS at, seq, head_hash, signature, public_key
            FROM meltybase.audit_checkpoints ORDER BY seq DESC, id DESC LIMIT 1
            """)
        return checkpoints(from: rows).first
    }

    static func checkpoints(from rows: PostgresRows) -> [AuditCheckpoint] {
        rows.rows.indices.map { index in
            let text = { (column: String) in rows.value(column, row: index) ?? "" }
            return AuditCheckpoint(
                id: Int64(text("id")) ?? 0, at: text("at"), seq: Int64(text("seq")) ?? 0, headHash: text("head_hash"),
                signature: text("signature"), publicKey: text("public_key"))
        }
    }
}
