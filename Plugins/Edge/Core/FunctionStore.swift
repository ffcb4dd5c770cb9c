import Foundation
import MeltyJSON
import MeltyPostgres
import Synchronization

/// Functions, their versions and their logs in the kernel's system database (schema
/// ``EdgeSchema``). Every statement is keyed by portal and takes its values as bound
/// parameters; text holding a NUL byte is refused before it reaches libpq (log messages
/// have NUL replaced by U+FFFD instead, so a function's output is never lost).
///
/// Changes (deploy, rollback, delete) are announced with `NOTIFY edge_functions,
/// '<portal>/<name>'` in the same transaction, so every kernel sees them after the commit.
public final class FunctionStore: Sendable {
    /// The pool on the system database.
    public let pool: PostgresPool
    private let migrated = Atomic<Bool>(false)

    /// A store on `pool` (the plugin's pool on the system database).
    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// A store with a pool of its own on `conninfo`, driven by `loop`.
    public convenience init(conninfo: String, connections: Int = 4, maxWaiting: Int = 256, loop: PostgresEventLoop) {
        self.init(pool: PostgresPool(conninfo: conninfo, size: connections, maxWaiting: maxWaiting, loop: loop))
    }

    /// Creates the schema (idempotent; also done before the first statement).
    public func migrate() async throws(EdgeStoreError) {
        do {
            try await pool.run { connection in try await EdgeSchema.migrate(on: connection) }
        } catch {
            throw EdgeStoreError.from(error)
        }
        migrated.store(true, ordering: .releasing)
    }

    /// Closes the pool.
    public func close() { pool.close() }

    /// Runs `body` on a migrated connection, errors as ``EdgeStoreError``.
    private func run<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws(EdgeStoreError) -> T {
        if !migrated.load(ordering: .acquiring) { try await migrate() }
        do {
            return try await pool.run(body)
        } catch {
            throw EdgeStoreError.from(error)
        }
    }

    // MARK: Functions and versions

    /// Stores `bundle` as the next version of `name` and makes it active, in one
    /// transaction; concurrent deploys of one name wait on the function's row, so each gets
    /// its own number. Announces the change.
    public func deploy(portal: String, name: FunctionName, bundle: FunctionBundle, createdBy: String) async throws(EdgeStoreError) -> FunctionVersion {
        try Self.refuseInvalid(portal: portal)
        try Self.refuseNUL(createdBy, "createdBy")
        let archive = bundle.archive
        let manifestText = bundle.manifest.jsonText
        let size = bundle.size
        let rows = try await run { connection in
            try await connection.transaction { connection in
                _ = try await connection.query(
                    """
                    INSERT INTO edge.functions (portal, name, active_version) VALUES ($1, $2, 0)
                    ON CONFLICT (portal, name) DO UPDATE SET updated_at = now()
                    """, [portal, name.value])
                let inserted = try await connection.query(
                    """
                    INSERT INTO edge.versions (portal, name, version, sha256, manifest, files, size, created_by)
                    SELECT $1, $2, coalesce(max(version), 0) + 1, encode(sha256($3::bytea || convert_to($4::text, 'UTF8')), 'hex'), $4::jsonb, $3::bytea, $5::integer, $6
                    FROM edge.versions WHERE portal = $1 AND name = $2
                    RETURNING version, sha256, extract(epoch FROM created_at)::float8 AS created
                    """, [portal, name.value, Self.bytea(archive), manifestText, String(size), createdBy])
                _ = try await connection.query(
                    "UPDATE edge.functions SET active_version = $3::integer, updated_at = now() WHERE portal = $1 AND name = $2",
                    [portal, name.value, inserted.value("version")])
                _ = try await connection.query("SELECT pg_notify($1, $2)", [EdgeSchema.channel, portal + "/" + name.value])
                return (inserted, true)
            }
        }
        guard let version = rows.value("version").flatMap({ Int($0) }), let sha256 = rows.value("sha256") else {
            throw EdgeStoreError.corruptRecord("the inserted version was not returned")
        }
        return FunctionVersion(
            portal: portal, name: name, version: version, sha256: sha256, manifest: bundle.manifest, size: size, createdAt: Self.date(rows.value("created")),
            createdBy: createdBy, active: true)
    }

    private static let recordColumns = """
        f.name, f.active_version, v.sha256, v.manifest::text AS manifest,
        extract(epoch FROM f.created_at)::float8 AS created, extract(epoch FROM f.updated_at)::float8 AS updated
        """

    /// The portal's functions with their active versions, by name.
    public func functions(portal: String) async throws(EdgeStoreError) -> [FunctionRecord] {
        try Self.refuseInvalid(portal: portal)
        let rows = try await run { connection in
            try await connection.query(
                """
                SELECT \(Self.recordColumns) FROM edge.functions f
                JOIN edge.versions v ON v.portal = f.portal AND v.name = f.name AND v.version = f.active_version
                WHERE f.portal = $1 ORDER BY f.name
                """, [portal])
        }
        return try rows.rows.indices.map { (index) throws(EdgeStoreError) in try Self.record(rows, index, portal: portal) }
    }

    /// The function `name` of `portal` with its active version's manifest; nil when there is none.
    public func function(portal: String, name: FunctionName) async throws(EdgeStoreError) -> FunctionRecord? {
        try Self.refuseInvalid(portal: portal)
        let rows = try await run { connection in
            try await connection.query(
                """
                SELECT \(Self.recordColumns) FROM edge.functions f
                JOIN edge.versions v ON v.portal = f.portal AND v.name = f.name AND v.version = f.active_version
                WHERE f.portal = $1 AND f.name = $2
                """, [portal, name.value])
        }
        return rows.rows.isEmpty ? nil : try Self.record(rows, 0, portal: portal)
    }

    /// The function's versions, newest first; throws ``EdgeStoreError/functionNotFound(portal:name:)``.
    public func versions(portal: String, name: FunctionName) async throws(EdgeStoreError) -> [FunctionVersion] {
        try Self.refuseInvalid(portal: portal)
        let rows = try await run { connection in
            try await connection.query(
                """
                SELECT v.version, v.sha256, v.manifest::text AS manifest, v.size, extract(epoch FROM v.created_at)::float8 AS created, v.created_by,
                       v.version = f.active_version AS active
                FROM edge.functions f JOIN edge.versions v ON v.portal = f.portal AND v.name = f.name
                WHERE f.portal = $1 AND f.name = $2 ORDER BY v.version DESC
                """, [portal, name.value])
        }
        guard !rows.rows.isEmpty else { throw EdgeStoreError.functionNotFound(portal: portal, name: name.value) }
        return try rows.rows.indices.map { (index) throws(EdgeStoreError) in
            FunctionVersion(
                portal: portal, name: name, version: Int(rows.value("version", row: index) ?? "") ?? 0, sha256: rows.value("sha256", row: index) ?? "",
                manifest: try Self.manifest(rows.value("manifest", row: index)), size: Int(rows.value("size", row: index) ?? "") ?? 0,
                createdAt: Self.date(rows.value("created", row: index)), createdBy: rows.value("created_by", row: index) ?? "",
                active: rows.value("active", row: index) == "t")
        }
    }

    /// The files and manifest of `version` (nil: the active one), to materialise on any kernel.
    public func bundle(portal: String, name: FunctionName, version: Int? = nil) async throws(EdgeStoreError) -> (version: Int, bundle: FunctionBundle) {
        try Self.refuseInvalid(portal: portal)
        let rows = try await run { connection in
            try await connection.query(
                """
                SELECT v.version, v.manifest::text AS manifest, v.files FROM edge.functions f
                JOIN edge.versions v ON v.portal = f.portal AND v.name = f.name AND v.version = coalesce($3::integer, f.active_version)
                WHERE f.portal = $1 AND f.name = $2
                """, [portal, name.value, version.map(String.init)])
        }
        guard !rows.rows.isEmpty, let number = rows.value("version").flatMap({ Int($0) }) else {
            if let version { throw EdgeStoreError.versionNotFound(portal: portal, name: name.value, version: version) }
            throw EdgeStoreError.functionNotFound(portal: portal, name: name.value)
        }
        let manifest = try Self.manifest(rows.value("manifest"))
        guard let archive = Self.bytes(fromBytea: rows.value("files")), let bundle = FunctionBundle(archive: archive, manifest: manifest) else {
            throw EdgeStoreError.corruptRecord("the files of \(name) version \(number) in portal \(portal) are damaged")
        }
        return (number, bundle)
    }

    /// Makes `version` (nil: the newest version before the active one) active; announces the change.
    public func rollback(portal: String, name: FunctionName, to version: Int? = nil) async throws(EdgeStoreError) -> FunctionRecord {
        try Self.refuseInvalid(portal: portal)
        if let version, version <= 0 || version > Int(Int32.max) { throw EdgeStoreError.versionNotFound(portal: portal, name: name.value, version: version) }
        let outcome: Int = try await run { connection in
            try await connection.transaction { connection in
                let current = try await connection.query("SELECT active_version FROM edge.functions WHERE portal = $1 AND name = $2 FOR UPDATE", [portal, name.value])
                guard let active = current.scalar.flatMap({ Int($0) }) else { return (-1, false) }
                let target = try await connection.query(
                    """
                    SELECT version FROM edge.versions WHERE portal = $1 AND name = $2
                    AND CASE WHEN $3::integer IS NULL THEN version < $4::integer ELSE version = $3::integer END
                    ORDER BY version DESC LIMIT 1
                    """, [portal, name.value, version.map(String.init), String(active)])
                guard let chosen = target.scalar.flatMap({ Int($0) }) else { return (-2, false) }
                _ = try await connection.query(
                    "UPDATE edge.functions SET active_version = $3::integer, updated_at = now() WHERE portal = $1 AND name = $2", [portal, name.value, String(chosen)])
                _ = try await connection.query("SELECT pg_notify($1, $2)", [EdgeSchema.channel, portal + "/" + name.value])
                return (chosen, true)
            }
        }
        switch outcome {
        case -1: throw EdgeStoreError.functionNotFound(portal: portal, name: name.value)
        case -2:
            if let version { throw EdgeStoreError.versionNotFound(portal: portal, name: name.value, version: version) }
            throw EdgeStoreError.noPreviousVersion(portal: portal, name: name.value)
        default:
            guard let record = try await function(portal: portal, name: name) else { throw EdgeStoreError.functionNotFound(portal: portal, name: name.value) }
            return record
        }
    }

    /// Deletes the function, its versions and its logs; announces the change. Throws
    /// ``EdgeStoreError/functionNotFound(portal:name:)`` when there is none.
    public func delete(portal: String, name: FunctionName) async throws(EdgeStoreError) {
        try Self.refuseInvalid(portal: portal)
        let deleted = try await run { connection in
            try await connection.transaction { connection in
                let rows = try await connection.query("DELETE FROM edge.functions WHERE portal = $1 AND name = $2", [portal, name.value])
                guard rows.commandTag != "DELETE 0" else { return (false, false) }
                _ = try await connection.query("DELETE FROM edge.logs WHERE portal = $1 AND name = $2", [portal, name.value])
                _ = try await connection.query("SELECT pg_notify($1, $2)", [EdgeSchema.channel, portal + "/" + name.value])
                return (true, true)
            }
        }
        if !deleted { throw EdgeStoreError.functionNotFound(portal: portal, name: name.value) }
    }

    // MARK: Logs

    /// The most rows one INSERT carries (7 parameters each, under Postgres's 65,535).
    public static let logRowsPerStatement = 1000

    /// Appends `lines`: one multi-row INSERT per ``logRowsPerStatement`` lines. Messages
    /// are cut at ``FunctionLogLine/maxMessageBytes`` and have NUL replaced by U+FFFD;
    /// portals, request ids and levels holding NUL are refused.
    public func appendLogs(_ lines: [FunctionLogLine]) async throws(EdgeStoreError) {
        guard !lines.isEmpty else { return }
        var parameters: [[String?]] = []
        for line in lines {
            try Self.refuseInvalid(portal: line.portal)
            try Self.refuseNUL(line.requestID, "requestID")
            try Self.refuseNUL(line.level, "level")
            guard line.level.utf8.count <= 16, line.requestID.utf8.count <= 256 else { throw EdgeStoreError.invalidInput("a log line's level or request id is too long") }
            guard line.version > 0, line.version <= Int(Int32.max) else { throw EdgeStoreError.invalidInput("a log line's version \(line.version) is out of range") }
            let message = Self.cut(CanonicalJSON.storable(line.message), bytes: FunctionLogLine.maxMessageBytes)
            parameters.append([line.portal, line.name.value, String(line.version), line.requestID, line.level, message, Self.epoch(line.at)])
        }
        try await run { connection in
            for start in stride(from: 0, to: parameters.count, by: Self.logRowsPerStatement) {
                let chunk = parameters[start..<min(start + Self.logRowsPerStatement, parameters.count)]
                let values = chunk.indices.map { row in
                    let base = (row - start) * 7
                    return "($\(base + 1), $\(base + 2), $\(base + 3)::integer, $\(base + 4), $\(base + 5), $\(base + 6), to_timestamp($\(base + 7)::float8))"
                }
                _ = try await connection.query(
                    "INSERT INTO edge.logs (portal, name, version, request_id, level, message, at) VALUES " + values.joined(separator: ", "),
                    chunk.flatMap { $0 })
            }
        }
    }

    /// The function's log lines with an id above `after`, ascending, at most `limit` (1…1000).
    public func logs(portal: String, name: FunctionName, after: Int64 = 0, limit: Int = 100) async throws(EdgeStoreError) -> [FunctionLogLine] {
        try Self.refuseInvalid(portal: portal)
        guard (1...1000).contains(limit) else { throw EdgeStoreError.invalidInput("limit must be from 1 to 1000, not \(limit)") }
        let rows = try await run { connection in
            try await connection.query(
                """
                SELECT id, version, request_id, level, message, extract(epoch FROM at)::float8 AS at FROM edge.logs
                WHERE portal = $1 AND name = $2 AND id > $3::bigint ORDER BY id LIMIT $4::integer
                """, [portal, name.value, String(max(after, 0)), String(limit)])
        }
        return rows.rows.indices.map { index in
            FunctionLogLine(
                id: Int64(rows.value("id", row: index) ?? "") ?? 0, portal: portal, name: name, version: Int(rows.value("version", row: index) ?? "") ?? 0,
                requestID: rows.value("request_id", row: index) ?? "", level: rows.value("level", row: index) ?? "", message: rows.value("message", row: index) ?? "",
                at: Self.date(rows.value("at", row: index)))
        }
    }

    /// Maintenance over every portal: deletes log lines older than `cutoff`, and beyond
    /// the newest `keepPerFunction` of each function. Returns how many were deleted.
    @discardableResult
    public func purgeLogs(olderThan cutoff: Date, keepPerFunction: Int) async throws(EdgeStoreError) -> Int {
        guard keepPerFunction >= 0, keepPerFunction <= Int(Int32.max) else { throw EdgeStoreError.invalidInput("keepPerFunction must be from 0 to \(Int32.max)") }
        let counts = try await run { connection in
            let old = try await connection.query("DELETE FROM edge.logs WHERE at < to_timestamp($1::float8)", [Self.epoch(cutoff)])
            let excess = try await connection.query(
                """
                DELETE FROM edge.logs l USING (
                    SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY portal, name ORDER BY id DESC) AS rank FROM edge.logs) ranked
                    WHERE rank > $1::integer
                ) doomed WHERE l.id = doomed.id
                """, [String(keepPerFunction)])
            return [old.commandTag, excess.commandTag]
        }
        return counts.reduce(0) { $0 + (Int($1.split(separator: " ").last ?? "") ?? 0) }
    }

    // MARK: Values

    /// Refuses a portal id that is empty, too long, or holds NUL, a control character or `/`
    /// (the NOTIFY payload's separator).
    static func refuseInvalid(portal: String) throws(EdgeStoreError) {
        guard !portal.isEmpty, portal.utf8.count <= 128, !portal.contains("/"),
            !portal.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw EdgeStoreError.invalidInput("the portal id \(FunctionName.quoted(portal)) is not valid") }
    }

    static func refuseNUL(_ text: String, _ what: String) throws(EdgeStoreError) {
        if text.utf8.contains(0) { throw EdgeStoreError.invalidInput("\(what) contains a NUL byte") }
    }

    /// `text` cut to at most `bytes` UTF-8 bytes at a character boundary.
    static func cut(_ text: String, bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var end = text.utf8.index(text.utf8.startIndex, offsetBy: bytes)
        while end > text.utf8.startIndex, text.utf8[end] & 0xC0 == 0x80 { end = text.utf8.index(before: end) }
        return String(decoding: text.utf8[..<end], as: UTF8.self)
    }

    static func bytea(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8](repeating: 0, count: 2 + bytes.count * 2)
        text[0] = UInt8(ascii: "\\")
        text[1] = UInt8(ascii: "x")
        for (index, byte) in bytes.enumerated() {
            text[2 + index * 2] = digits[Int(byte >> 4)]
            text[3 + index * 2] = digits[Int(byte & 0xF)]
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func bytes(fromBytea text: String?) -> [UInt8]? {
        guard let text else { return nil }
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else { return nil }
        func nibble(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var result = [UInt8]()
        result.reserveCapacity(utf8.count / 2 - 1)
        var index = 2
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            result.append(high << 4 | low)
            index += 2
        }
        return result
    }

    static func epoch(_ date: Date) -> String { String(date.timeIntervalSince1970) }

    static func date(_ text: String?) -> Date { Date(timeIntervalSince1970: text.flatMap { Double($0) } ?? 0) }

    static func manifest(_ text: String?) throws(EdgeStoreError) -> FunctionManifest {
        do {
            return try FunctionManifest(json: Array((text ?? "").utf8))
        } catch {
            throw EdgeStoreError.corruptRecord("a stored manifest does not parse: \(error.message)")
        }
    }

    static func record(_ rows: PostgresRows, _ index: Int, portal: String) throws(EdgeStoreError) -> FunctionRecord {
        let name: FunctionName
        do {
            name = try FunctionName(rows.value("name", row: index) ?? "")
        } catch {
            throw EdgeStoreError.corruptRecord(error.message)
        }
        return FunctionRecord(
            portal: portal, name: name, activeVersion: Int(rows.value("active_version", row: index) ?? "") ?? 0, manifest: try manifest(rows.value("manifest", row: index)),
            sha256: rows.value("sha256", row: index) ?? "", createdAt: date(rows.value("created", row: index)), updatedAt: date(rows.value("updated", row: index)))
    }
}
