import Foundation
import MeltyJSON
import MeltyPostgres

/// The Knowledge Mesh's tables in the portal database (schema `intelligence`), the source of
/// truth the indexes are built from. Every write to a collection locks its row, so change
/// numbers (`seq`, from one sequence) are committed in order within a collection: an index
/// that has applied every change up to `seq` is brought up to date by the changes after it.
public enum VectorStore {
    /// The DDL (idempotent).
    public static let schema = """
        CREATE SEQUENCE IF NOT EXISTS intelligence.vector_changes;
        CREATE SEQUENCE IF NOT EXISTS intelligence.vector_labels;
        CREATE TABLE IF NOT EXISTS intelligence.vector_collections (
            uid bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            name text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,63}$'),
            dimension integer NOT NULL CHECK (dimension BETWEEN 1 AND 4096),
            metric text NOT NULL CHECK (metric IN ('cosine', 'l2', 'inner_product')),
            read_access text NOT NULL DEFAULT 'service_role' CHECK (read_access IN ('service_role', 'authenticated', 'anon')),
            created timestamptz NOT NULL DEFAULT now(),
            pruned_through bigint NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS intelligence.vector_entries (
            collection bigint NOT NULL REFERENCES intelligence.vector_collections (uid) ON DELETE CASCADE,
            id text NOT NULL,
            label bigint NOT NULL DEFAULT nextval('intelligence.vector_labels'),
            embedding real[] NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}',
            content text,
            search tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, coalesce(content, ''))) STORED,
            seq bigint NOT NULL,
            updated timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (collection, id),
            UNIQUE (collection, label)
        );
        CREATE INDEX IF NOT EXISTS vector_entries_seq ON intelligence.vector_entries (collection, seq);
        CREATE INDEX IF NOT EXISTS vector_entries_search ON intelligence.vector_entries USING gin (search);
        CREATE TABLE IF NOT EXISTS intelligence.vector_deletions (
            collection bigint NOT NULL REFERENCES intelligence.vector_collections (uid) ON DELETE CASCADE,
            label bigint NOT NULL,
            seq bigint NOT NULL,
            PRIMARY KEY (collection, seq)
        );
        ALTER TABLE intelligence.vector_collections ENABLE ROW LEVEL SECURITY;
        ALTER TABLE intelligence.vector_entries ENABLE ROW LEVEL SECURITY;
        ALTER TABLE intelligence.vector_deletions ENABLE ROW LEVEL SECURITY;
        """

    /// One entry to write.
    public struct EntryInput: Sendable, Equatable {
        /// The caller's id.
        public var id: String
        /// The embedding.
        public var vector: [Float]
        /// The metadata object.
        public var metadata: [String: JSONValue]
        /// Text for full-text search and answers.
        public var content: String?

        /// An entry.
        public init(id: String, vector: [Float], metadata: [String: JSONValue] = [:], content: String? = nil) {
            self.id = id
            self.vector = vector
            self.metadata = metadata
            self.content = content
        }
    }

    /// One stored entry as queries answer it.
    public struct StoredEntry: Sendable, Equatable {
        /// The index label.
        public var label: UInt64
        /// The caller's id.
        public var id: String
        /// The metadata object.
        public var metadata: [String: JSONValue]
        /// The content, if any.
        public var content: String?
        /// The embedding (only when asked for).
        public var vector: [Float]?
    }

    /// Changes of one collection after a change number, in order.
    public struct Changes: Sendable {
        /// Labels removed.
        public var removed: [UInt64] = []
        /// Labels written (inserted or replaced) and their vectors.
        public var written: [(label: UInt64, vector: [Float])] = []
        /// The highest change number seen (the input's when nothing changed).
        public var through: Int64
        /// Whether more changes follow (the page was full).
        public var more = false
        /// The collection's `pruned_through`, read after the changes: deletions up to it may be
        /// gone (another kernel's snapshot covered them), so an index behind it may have
        /// missed some (``LoadedCollection`` then rebuilds).
        public var prunedThrough: Int64 = 0
    }

    private static let collectionColumns =
        "uid, name, dimension, metric, read_access, (SELECT count(*) FROM intelligence.vector_entries e WHERE e.collection = c.uid), to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), pruned_through"

    private static let uncountedColumns =
        "uid, name, dimension, metric, read_access, 0, to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), pruned_through"

    private static func collection(_ row: [String?]) -> VectorCollection? {
        guard row.count == 8, let uid = row[0].flatMap({ Int64($0) }), let name = row[1], let dimension = row[2].flatMap({ Int($0) }),
            let metric = row[3], let access = row[4].flatMap({ VectorCollection.ReadAccess(rawValue: $0) })
        else { return nil }
        return VectorCollection(
            uid: uid, name: name, dimension: dimension, metric: metric, readAccess: access, count: row[5].flatMap { Int($0) } ?? 0, created: row[6] ?? "",
            prunedThrough: row[7].flatMap { Int64($0) } ?? 0)
    }

    /// Every collection with its entry count, by name.
    public static func collections(_ connection: PostgresConnection) async throws -> [VectorCollection] {
        try await connection.preparedQuery("SELECT \(collectionColumns) FROM intelligence.vector_collections c ORDER BY name").rows.compactMap(collection)
    }

    /// The collection named `name`, or nil.
    public static func collection(named name: String, _ connection: PostgresConnection) async throws -> VectorCollection? {
        try await connection.preparedQuery("SELECT \(collectionColumns) FROM intelligence.vector_collections c WHERE name = $1", [name]).rows.first.flatMap(
            collection)
    }

    /// The collection called `name` without counting its entries (`count` is 0): what a query
    /// needs, without a scan of every entry per request.
    public static func collectionUncounted(named name: String, _ connection: PostgresConnection) async throws -> VectorCollection? {
        try await connection.preparedQuery("SELECT \(uncountedColumns) FROM intelligence.vector_collections c WHERE name = $1", [name]).rows.first.flatMap(
            collection)
    }

    /// Creates a collection; throws ``VectorStoreError/collectionExists(_:)`` when the name is taken.
    public static func create(
        name: String, dimension: Int, metric: String, readAccess: VectorCollection.ReadAccess, _ connection: PostgresConnection
    ) async throws -> VectorCollection {
        let count = Int(try await connection.preparedQuery("SELECT count(*) FROM intelligence.vector_collections").scalar ?? "0") ?? 0
        guard count < VectorCollectionLimits.collectionsPerPortal else {
            throw VectorStoreError.limitExceeded("the portal has \(count) collections; at most \(VectorCollectionLimits.collectionsPerPortal) are allowed")
        }
        let inserted = try await connection.preparedQuery(
            "INSERT INTO intelligence.vector_collections (name, dimension, metric, read_access) VALUES ($1, $2::integer, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING name",
            [name, String(dimension), metric, readAccess.rawValue])
        guard inserted.rows.count == 1, let created = try await collection(named: name, connection) else { throw VectorStoreError.collectionExists(name) }
        return created
    }

    /// Changes who may read a collection.
    public static func setReadAccess(_ access: VectorCollection.ReadAccess, of name: String, _ connection: PostgresConnection) async throws {
        let result = try await connection.preparedQuery("UPDATE intelligence.vector_collections SET read_access = $2 WHERE name = $1", [name, access.rawValue])
        guard result.commandTag.hasSuffix(" 1") else { throw VectorStoreError.collectionNotFound(name) }
    }

    /// Drops a collection and its entries; returns its uid.
    @discardableResult
    public static func drop(_ name: String, _ connection: PostgresConnection) async throws -> Int64 {
        let result = try await connection.preparedQuery("DELETE FROM intelligence.vector_collections WHERE name = $1 RETURNING uid", [name])
        guard let uid = result.scalar.flatMap({ Int64($0) }) else { throw VectorStoreError.collectionNotFound(name) }
        return uid
    }

    /// Locks a collection's row for the rest of the transaction (every writer does, so
    /// change numbers commit in order) and returns it.
    static func lock(_ name: String, _ connection: PostgresConnection) async throws -> VectorCollection {
        guard let uid = try await connection.preparedQuery("SELECT uid FROM intelligence.vector_collections WHERE name = $1 FOR UPDATE", [name]).scalar,
            Int64(uid) != nil, let locked = try await collection(named: name, connection)
        else { throw VectorStoreError.collectionNotFound(name) }
        return locked
    }

    /// Inserts or replaces `entries` (the last of duplicate ids wins) in one transaction;
    /// returns each written id with its label.
    public static func upsert(_ entries: [EntryInput], into name: String, _ connection: PostgresConnection) async throws -> [(id: String, label: UInt64)] {
        var byID: [String: Int] = [:]
        var unique: [EntryInput] = []
        for entry in entries {
            if let at = byID[entry.id] {
                unique[at] = entry
            } else {
                byID[entry.id] = unique.count
                unique.append(entry)
            }
        }
        let payload = JSONValue.array(
            unique.map { entry in
                .object([
                    "id": .string(entry.id), "vector": .string(floatArray(entry.vector)), "metadata": .object(entry.metadata),
                    "content": entry.content.map(JSONValue.string) ?? .null,
                ])
            })
        let json = String(decoding: try JSONValue.serialize(payload), as: UTF8.self)
        return try await connection.transaction { connection in
            let collection = try await lock(name, connection)
            let ids = JSONValue.array(unique.map { .string($0.id) })
            let existing =
                Int(
                    try await connection.preparedQuery(
                        "SELECT count(*) FROM intelligence.vector_entries WHERE collection = $1 AND id IN (SELECT jsonb_array_elements_text($2::jsonb))",
                        [String(collection.uid), String(decoding: try JSONValue.serialize(ids), as: UTF8.self)]
                    ).scalar ?? "0") ?? 0
            let after = collection.count - existing + unique.count
            guard after <= VectorCollectionLimits.entriesPerCollection else {
                throw VectorStoreError.limitExceeded(
                    "the collection would hold \(after) entries; at most \(VectorCollectionLimits.entriesPerCollection) are allowed")
            }
            let rows = try await connection.preparedQuery(
                """
                INSERT INTO intelligence.vector_entries AS t (collection, id, embedding, metadata, content, seq)
                SELECT $1::bigint, e->>'id', (e->>'vector')::real[], coalesce(e->'metadata', '{}'::jsonb), e->>'content', nextval('intelligence.vector_changes')
                FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS input(e, ord) ORDER BY ord
                ON CONFLICT (collection, id) DO UPDATE SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata,
                    content = EXCLUDED.content, seq = EXCLUDED.seq, updated = now()
                RETURNING id, label
                """, [String(collection.uid), json]
            ).rows
            let written: [(id: String, label: UInt64)] = rows.compactMap { row in
                guard row.count == 2, let id = row[0], let label = row[1].flatMap({ UInt64($0) }) else { return nil }
                return (id, label)
            }
            return (written, true)
        }
    }

    /// Deletes the entries with `ids` (unknown ids are ignored); returns the removed labels.
    public static func delete(ids: [String], from name: String, _ connection: PostgresConnection) async throws -> [UInt64] {
        let json = String(decoding: try JSONValue.serialize(JSONValue.array(ids.map(JSONValue.string))), as: UTF8.self)
        return try await connection.transaction { connection in
            let collection = try await lock(name, connection)
            let rows = try await connection.preparedQuery(
                """
                WITH gone AS (
                    DELETE FROM intelligence.vector_entries WHERE collection = $1::bigint AND id IN (SELECT jsonb_array_elements_text($2::jsonb))
                    RETURNING label)
                INSERT INTO intelligence.vector_deletions (collection, label, seq)
                SELECT $1::bigint, label, nextval('intelligence.vector_changes') FROM gone RETURNING label
                """, [String(collection.uid), json]
            ).rows
            return (rows.compactMap { label(of: $0) }, true)
        }
    }

    /// The changes of the collection `uid` after change number `after`, at most `limit` written rows.
    public static func changes(collection uid: Int64, after: Int64, limit: Int = 2_000, _ connection: PostgresConnection) async throws -> Changes {
        var changes = Changes(through: after)
        // The deletions and the collection's pruned_through in one statement (one snapshot): a
        // prune that removed some of them (its mark is written with or before its DELETE) shows
        // its mark here (Changes.prunedThrough), without a round trip of its own.
        let marked = try await connection.preparedQuery(
            """
            SELECT d.label, d.seq, c.pruned_through FROM intelligence.vector_collections c
                LEFT JOIN intelligence.vector_deletions d ON d.collection = c.uid AND d.seq > $2
            WHERE c.uid = $1 ORDER BY d.seq
            """, [String(uid), String(after)])
        changes.prunedThrough = marked.rows.first?[2].flatMap { Int64($0) } ?? 0
        let removed = marked.rows.filter { $0[0] != nil }
        for row in removed {
            guard row.count == 3, let label = row[0].flatMap({ UInt64($0) }), let seq = row[1].flatMap({ Int64($0) }) else { continue }
            changes.removed.append(label)
            changes.through = max(changes.through, seq)
        }
        let written = try await connection.preparedQuery(
            "SELECT label, embedding::text, seq FROM intelligence.vector_entries WHERE collection = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            [String(uid), String(after), String(limit)])
        for row in written.rows {
            guard row.count == 3, let label = row[0].flatMap({ UInt64($0) }), let vector = row[1].flatMap(parseFloatArray),
                let seq = row[2].flatMap({ Int64($0) })
            else { continue }
            changes.written.append((label, vector))
            changes.through = max(changes.through, seq)
        }
        changes.more = written.rows.count >= limit
        if changes.more, let last = written.rows.last?[2].flatMap({ Int64($0) }) {
            // Deletions past the page's end are read again with the next page.
            changes.removed = zip(removed, changes.removed).compactMap { row, label in
                (row[1].flatMap { Int64($0) } ?? 0) <= last ? label : nil
            }
            changes.through = last
        }
        return changes
    }

    /// The collection's `pruned_through`: deletions up to it are gone (a snapshot covered them).
    public static func prunedThrough(collection uid: Int64, _ connection: PostgresConnection) async throws -> Int64 {
        let rows = try await connection.preparedQuery("SELECT pruned_through FROM intelligence.vector_collections WHERE uid = $1", [String(uid)])
        return rows.scalar.flatMap { Int64($0) } ?? 0
    }

    /// The highest change number of a collection (0 when it never changed) and its entry count.
    public static func state(collection uid: Int64, _ connection: PostgresConnection) async throws -> (through: Int64, count: Int) {
        let row = try await connection.preparedQuery(
            """
            SELECT greatest(coalesce((SELECT max(seq) FROM intelligence.vector_entries WHERE collection = $1), 0),
                            coalesce((SELECT max(seq) FROM intelligence.vector_deletions WHERE collection = $1), 0)),
                   (SELECT count(*) FROM intelligence.vector_entries WHERE collection = $1)
            """, [String(uid)]
        ).rows.first
        return (row?[0].flatMap { Int64($0) } ?? 0, row?[1].flatMap { Int($0) } ?? 0)
    }

    /// Forgets deletions a saved snapshot covers (they are no longer needed to bring it up to date).
    public static func pruneDeletions(collection uid: Int64, through seq: Int64, _ connection: PostgresConnection) async throws {
        _ = try await connection.pipeline([
            // The mark first: a reader that misses a deletion then sees the mark (Changes.prunedThrough).
            // It moves only to the last deletion actually removed, so snapshots of an insert-only
            // collection never send other kernels' indexes into a rebuild.
            (
                """
                UPDATE intelligence.vector_collections SET pruned_through = greatest(pruned_through,
                    (SELECT max(seq) FROM intelligence.vector_deletions WHERE collection = $1 AND seq <= $2)) WHERE uid = $1
                """, [String(uid), String(seq)]
            ),
            ("DELETE FROM intelligence.vector_deletions WHERE collection = $1 AND seq <= $2", [String(uid), String(seq)]),
        ])
    }

    /// The labels of the entries of `uid` that match `filter`.
    public static func labels(collection uid: Int64, matching filter: VectorFilter, _ connection: PostgresConnection) async throws -> Set<UInt64> {
        try await labels(collection: uid, matching: filter, limit: nil, among: nil, connection) ?? []
    }

    /// The labels of `uid`'s entries that `filter` admits: nil when more than `limit` do (a
    /// broad filter: the caller filters the index's candidates instead); `among` narrows the
    /// check to those labels.
    public static func labels(
        collection uid: Int64, matching filter: VectorFilter, limit: Int?, among candidates: [UInt64]?, _ connection: PostgresConnection
    ) async throws -> Set<UInt64>? {
        var parameters: [String?] = [String(uid)]
        let predicate = filter.sql(column: "metadata", parameters: &parameters)
        var sql = "SELECT label FROM intelligence.vector_entries WHERE collection = $1 AND \(predicate)"
        if let candidates {
            parameters.append("{" + candidates.map(String.init).joined(separator: ",") + "}")
            sql += " AND label = ANY($\(parameters.count)::bigint[])"
        }
        if let limit { sql += " LIMIT \(max(0, limit) &+ 1)" }
        let rows = try await connection.query(sql, parameters).rows
        if let limit, rows.count > limit { return nil }
        return Set(rows.compactMap { label(of: $0) })
    }

    /// Full-text matches of `text` (websearch syntax, English stemming) in `uid`, best first.
    public static func textSearch(
        collection uid: Int64, text: String, filter: VectorFilter?, limit: Int, _ connection: PostgresConnection
    ) async throws -> [(label: UInt64, rank: Double)] {
        var parameters: [String?] = [String(uid), text, String(limit)]
        let predicate = filter.map { "AND " + $0.sql(column: "metadata", parameters: &parameters) } ?? ""
        let rows = try await connection.query(
            """
            SELECT label, ts_rank_cd(search, q) FROM intelligence.vector_entries, websearch_to_tsquery('english', $2) AS q
            WHERE collection = $1 AND search @@ q \(predicate) ORDER BY 2 DESC, label LIMIT $3
            """, parameters
        ).rows
        return rows.compactMap { row in
            guard row.count == 2, let label = row[0].flatMap({ UInt64($0) }) else { return nil }
            return (label, row[1].flatMap { Double($0) } ?? 0)
        }
    }

    /// The entries of `uid` with these labels (in no particular order).
    public static func entries(collection uid: Int64, labels: [UInt64], withVectors: Bool = false, _ connection: PostgresConnection) async throws -> [StoredEntry] {
        guard !labels.isEmpty else { return [] }
        let list = "{" + labels.map(String.init).joined(separator: ",") + "}"
        let rows = try await connection.preparedQuery(
            "SELECT label, id, metadata::text, content, CASE WHEN $3 THEN embedding::text END FROM intelligence.vector_entries WHERE collection = $1 AND label = ANY($2::bigint[])",
            [String(uid), list, withVectors ? "true" : "false"]
        ).rows
        return rows.compactMap { row in
            guard row.count == 5, let label = row[0].flatMap({ UInt64($0) }), let id = row[1] else { return nil }
            let metadata = row[2].flatMap { JSONValue.object(json: Array($0.utf8)) } ?? [:]
            return StoredEntry(label: label, id: id, metadata: metadata, content: row[3], vector: row[4].flatMap(parseFloatArray))
        }
    }

    /// The entries of `uid` with these caller ids, vectors included.
    public static func entries(collection uid: Int64, ids: [String], _ connection: PostgresConnection) async throws -> [StoredEntry] {
        let json = String(decoding: try JSONValue.serialize(JSONValue.array(ids.map(JSONValue.string))), as: UTF8.self)
        let rows = try await connection.preparedQuery(
            "SELECT label FROM intelligence.vector_entries WHERE collection = $1 AND id IN (SELECT jsonb_array_elements_text($2::jsonb))", [String(uid), json]
        ).rows
        return try await entries(collection: uid, labels: rows.compactMap { label(of: $0) }, withVectors: true, connection)
    }

    private static func label(of row: [String?]) -> UInt64? {
        guard let first = row.first, let text = first else { return nil }
        return UInt64(text)
    }

    /// `vector` as a Postgres `real[]` literal (shortest round-tripping decimal per number).
    public static func floatArray(_ vector: [Float]) -> String {
        "{" + vector.map { "\($0)" }.joined(separator: ",") + "}"
    }

    /// A Postgres `real[]` text (`{1,2.5,-3e-05}`) as floats, or nil when it is not one.
    public static func parseFloatArray(_ text: String) -> [Float]? {
        guard text.hasPrefix("{"), text.hasSuffix("}") else { return nil }
        let inner = text.dropFirst().dropLast()
        if inner.isEmpty { return [] }
        var result: [Float] = []
        for part in inner.split(separator: ",") {
            guard let value = Float(part.trimmingCharacters(in: .whitespaces)), value.isFinite else { return nil }
            result.append(value)
        }
        return result
    }
}
