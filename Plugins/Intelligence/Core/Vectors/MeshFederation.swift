import Foundation
import MeltyJSON
import MeltyPostgres

/// The federated Knowledge Mesh in the kernel's system database (schema
/// `intelligence_mesh`): which portals take part, the mesh collections, and the anonymised
/// copies that opted-in portals published. A portal that has not opted in to publishing has
/// no rows here; opting out deletes its copies.
public enum MeshFederation {
    /// The system database's DDL (idempotent; run under an advisory lock so portals starting
    /// together do not race on `CREATE SCHEMA`).
    public static let schema = """
        CREATE SCHEMA IF NOT EXISTS intelligence_mesh;
        CREATE TABLE IF NOT EXISTS intelligence_mesh.members (
            portal text PRIMARY KEY,
            publish boolean NOT NULL DEFAULT false,
            search boolean NOT NULL DEFAULT false,
            published_entries bigint NOT NULL DEFAULT 0,
            queries bigint NOT NULL DEFAULT 0,
            updated timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS intelligence_mesh.collections (
            name text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,63}$'),
            dimension integer NOT NULL CHECK (dimension BETWEEN 1 AND 4096),
            metric text NOT NULL CHECK (metric IN ('cosine', 'l2', 'inner_product')),
            created timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS intelligence_mesh.entries (
            collection text NOT NULL REFERENCES intelligence_mesh.collections (name) ON DELETE CASCADE,
            mesh_id uuid NOT NULL,
            publisher text NOT NULL REFERENCES intelligence_mesh.members (portal) ON DELETE CASCADE,
            embedding real[] NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}',
            content text,
            published timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (collection, mesh_id)
        );
        CREATE INDEX IF NOT EXISTS entries_publisher ON intelligence_mesh.entries (publisher);
        """

    /// The advisory lock key the DDL runs under.
    public static let schemaLockKey: Int64 = 0x6D65_7368_7665_6331

    /// The portal-side map from a published entry to its random mesh id (so a re-publish
    /// replaces the copy, and the hub never sees the portal's own ids).
    public static let portalSchema = """
        CREATE TABLE IF NOT EXISTS intelligence.vector_published (
            collection bigint NOT NULL REFERENCES intelligence.vector_collections (uid) ON DELETE CASCADE,
            id text NOT NULL,
            mesh_collection text NOT NULL,
            mesh_id uuid NOT NULL DEFAULT gen_random_uuid(),
            PRIMARY KEY (collection, id, mesh_collection)
        );
        ALTER TABLE intelligence.vector_published ENABLE ROW LEVEL SECURITY;
        """

    /// A portal's part in the mesh.
    public struct Membership: Sendable, Equatable {
        /// The portal publishes anonymised entries.
        public var publish: Bool
        /// The portal may search the mesh.
        public var search: Bool
        /// How many of its copies the mesh holds.
        public var publishedEntries: Int
    }

    /// A mesh collection as the hub describes it (counts only).
    public struct CollectionSummary: Sendable, Equatable {
        /// The mesh collection's name.
        public var name: String
        /// Numbers per vector.
        public var dimension: Int
        /// The distance metric.
        public var metric: String
        /// Copies in it.
        public var entries: Int
        /// Portals that published to it.
        public var publishers: Int
    }

    /// One anonymised copy ready to publish.
    public struct Copy: Sendable, Equatable {
        /// The random id the portal keeps for it.
        public var meshID: String
        /// The embedding.
        public var vector: [Float]
        /// Scrubbed metadata.
        public var metadata: [String: JSONValue]
        /// Scrubbed content.
        public var content: String?

        /// A copy.
        public init(meshID: String, vector: [Float], metadata: [String: JSONValue], content: String?) {
            self.meshID = meshID
            self.vector = vector
            self.metadata = metadata
            self.content = content
        }
    }

    /// One mesh search hit.
    public struct Hit: Sendable, Equatable {
        /// The copy's random id.
        public var meshID: String
        /// The distance (as the index computes it for the metric).
        public var distance: Double
        /// Scrubbed metadata.
        public var metadata: [String: JSONValue]
        /// Scrubbed content.
        public var content: String?
    }

    /// Why a mesh operation was refused.
    public enum Refusal: Error, CustomStringConvertible, Sendable, Equatable {
        /// The portal has not opted in to this (publish or search).
        case notOptedIn(String)
        /// No mesh collection of that name.
        case collectionNotFound(String)
        /// The mesh collection has another dimension or metric.
        case shapeMismatch(String)

        /// What happened.
        public var description: String {
            switch self {
            case .notOptedIn(let what): "this portal has not opted in to \(what) in the Knowledge Mesh"
            case .collectionNotFound(let name): "no mesh collection named \"\(name)\""
            case .shapeMismatch(let message): message
            }
        }
    }

    /// Installs the hub's schema.
    public static func install(_ connection: PostgresConnection) async throws {
        try await connection.transaction { connection in
            _ = try await connection.query("SELECT pg_advisory_xact_lock($1)", [String(schemaLockKey)])
            _ = try await connection.execute(schema)
            return ((), true)
        }
    }

    /// The portal's membership (nil when it never opted in).
    public static func membership(of portal: String, _ connection: PostgresConnection) async throws -> Membership? {
        let rows = try await connection.preparedQuery(
            "SELECT publish, search, (SELECT count(*) FROM intelligence_mesh.entries WHERE publisher = $1) FROM intelligence_mesh.members WHERE portal = $1",
            [portal]
        ).rows
        guard let row = rows.first, row.count == 3 else { return nil }
        return Membership(publish: row[0] == "t", search: row[1] == "t", publishedEntries: row[2].flatMap { Int($0) } ?? 0)
    }

    /// Sets the portal's membership; turning publishing off deletes every copy it published.
    /// A portal that opts out of both is removed from the hub entirely.
    public static func setMembership(of portal: String, publish: Bool, search: Bool, _ connection: PostgresConnection) async throws -> Membership {
        try await connection.transaction { connection in
            if !publish && !search {
                _ = try await connection.preparedQuery("DELETE FROM intelligence_mesh.members WHERE portal = $1", [portal])
                return (Membership(publish: false, search: false, publishedEntries: 0), true)
            }
            if !publish { _ = try await connection.preparedQuery("DELETE FROM intelligence_mesh.entries WHERE publisher = $1", [portal]) }
            _ = try await connection.preparedQuery(
                """
                INSERT INTO intelligence_mesh.members (portal, publish, search, published_entries) VALUES ($1, $2::boolean, $3::boolean, 0)
                ON CONFLICT (portal) DO UPDATE SET publish = EXCLUDED.publish, search = EXCLUDED.search, updated = now(),
                    published_entries = (SELECT count(*) FROM intelligence_mesh.entries WHERE publisher = $1)
                """, [portal, publish ? "true" : "false", search ? "true" : "false"])
            let count = Int(try await connection.preparedQuery("SELECT count(*) FROM intelligence_mesh.entries WHERE publisher = $1", [portal]).scalar ?? "0") ?? 0
            return (Membership(publish: publish, search: search, publishedEntries: count), true)
        }
    }

    /// The mesh collections with their counts.
    public static func collections(_ connection: PostgresConnection) async throws -> [CollectionSummary] {
        try await connection.preparedQuery(
            """
            SELECT c.name, c.dimension, c.metric, count(e.mesh_id), count(DISTINCT e.publisher)
            FROM intelligence_mesh.collections c LEFT JOIN intelligence_mesh.entries e ON e.collection = c.name
            GROUP BY c.name, c.dimension, c.metric ORDER BY c.name
            """
        ).rows.compactMap { row in
            guard row.count == 5, let name = row[0], let dimension = row[1].flatMap({ Int($0) }), let metric = row[2] else { return nil }
            return CollectionSummary(
                name: name, dimension: dimension, metric: metric, entries: row[3].flatMap { Int($0) } ?? 0, publishers: row[4].flatMap { Int($0) } ?? 0)
        }
    }

    /// Publishes `copies` from `portal` to the mesh collection `name` (created with this
    /// shape on first use); refuses when the portal has not opted in to publishing.
    public static func publish(
        _ copies: [Copy], to name: String, dimension: Int, metric: String, from portal: String, _ connection: PostgresConnection
    ) async throws -> Int {
        let payload = JSONValue.array(
            copies.map { copy in
                .object([
                    "mesh_id": .string(copy.meshID), "vector": .string(VectorStore.floatArray(copy.vector)), "metadata": .object(copy.metadata),
                    "content": copy.content.map(JSONValue.string) ?? .null,
                ])
            })
        let json = String(decoding: try JSONValue.serialize(payload), as: UTF8.self)
        return try await connection.transaction { connection in
            let member = try await connection.preparedQuery("SELECT publish FROM intelligence_mesh.members WHERE portal = $1 FOR UPDATE", [portal]).scalar
            guard member == "t" else { throw Refusal.notOptedIn("publishing") }
            _ = try await connection.preparedQuery(
                "INSERT INTO intelligence_mesh.collections (name, dimension, metric) VALUES ($1, $2::integer, $3) ON CONFLICT (name) DO NOTHING",
                [name, String(dimension), metric])
            let shape = try await connection.preparedQuery("SELECT dimension, metric FROM intelligence_mesh.collections WHERE name = $1", [name]).rows.first
            guard let shape, shape.count == 2, shape[0] == String(dimension), shape[1] == metric else {
                throw Refusal.shapeMismatch(
                    "the mesh collection \"\(name)\" holds \(shape?[0] ?? "?")-dimensional \(shape?[1] ?? "?") vectors; this collection has \(dimension)-dimensional \(metric) vectors"
                )
            }
            let written = try await connection.preparedQuery(
                """
                INSERT INTO intelligence_mesh.entries (collection, mesh_id, publisher, embedding, metadata, content)
                SELECT $1, (e->>'mesh_id')::uuid, $2, (e->>'vector')::real[], coalesce(e->'metadata', '{}'::jsonb), e->>'content'
                FROM jsonb_array_elements($3::jsonb) AS input(e)
                ON CONFLICT (collection, mesh_id) DO UPDATE SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata,
                    content = EXCLUDED.content, published = now()
                WHERE intelligence_mesh.entries.publisher = EXCLUDED.publisher
                """, [name, portal, json])
            _ = try await connection.preparedQuery(
                "UPDATE intelligence_mesh.members SET published_entries = (SELECT count(*) FROM intelligence_mesh.entries WHERE publisher = $1), updated = now() WHERE portal = $1",
                [portal])
            return (Int(written.commandTag.split(separator: " ").last ?? "0") ?? 0, true)
        }
    }

    /// Withdraws `portal`'s copies with these mesh ids; returns how many were removed.
    public static func unpublish(meshIDs: [String], from name: String, portal: String, _ connection: PostgresConnection) async throws -> Int {
        let json = String(decoding: try JSONValue.serialize(JSONValue.array(meshIDs.map(JSONValue.string))), as: UTF8.self)
        let results = try await connection.pipeline([
            (
                "DELETE FROM intelligence_mesh.entries WHERE collection = $1 AND publisher = $2 AND mesh_id::text IN (SELECT jsonb_array_elements_text($3::jsonb))",
                [name, portal, json]
            ),
            (
                "UPDATE intelligence_mesh.members SET published_entries = (SELECT count(*) FROM intelligence_mesh.entries WHERE publisher = $1), updated = now() WHERE portal = $1",
                [portal]
            ),
        ])
        return Int(results.first?.commandTag.split(separator: " ").last ?? "0") ?? 0
    }

    /// The SQL distance between `embedding` and the query `$n::real[]`, as hnswlib defines
    /// it for the metric (squared L2; 1 - inner product; 1 - cosine similarity).
    static func distanceSQL(metric: String, query: String) -> String {
        switch metric {
        case "l2": return "(SELECT sum((a - b)::float8 * (a - b)::float8) FROM unnest(embedding, \(query)::real[]) AS t(a, b))"
        case "inner_product": return "(1 - (SELECT sum(a::float8 * b::float8) FROM unnest(embedding, \(query)::real[]) AS t(a, b)))"
        default:
            return
                "(1 - (SELECT sum(a::float8 * b::float8) / nullif(sqrt(sum(a::float8 * a::float8)) * sqrt(sum(b::float8 * b::float8)), 0) FROM unnest(embedding, \(query)::real[]) AS t(a, b)))"
        }
    }

    /// The `k` nearest copies of the mesh collection `name` to `vector` (exact search in the
    /// hub), for a portal that opted in to searching.
    public static func search(
        _ name: String, vector: [Float], k: Int, filter: VectorFilter?, portal: String, _ connection: PostgresConnection
    ) async throws -> [Hit] {
        let member = try await connection.preparedQuery("SELECT search FROM intelligence_mesh.members WHERE portal = $1", [portal]).scalar
        guard member == "t" else { throw Refusal.notOptedIn("searching") }
        let shape = try await connection.preparedQuery("SELECT dimension, metric FROM intelligence_mesh.collections WHERE name = $1", [name]).rows.first
        guard let shape, shape.count == 2, let dimension = shape[0].flatMap({ Int($0) }), let metric = shape[1] else { throw Refusal.collectionNotFound(name) }
        guard dimension == vector.count else {
            throw Refusal.shapeMismatch("the mesh collection \"\(name)\" holds \(dimension)-dimensional vectors; the query has \(vector.count)")
        }
        var parameters: [String?] = [name, VectorStore.floatArray(vector), String(k)]
        let predicate = filter.map { "AND " + $0.sql(column: "e.metadata", parameters: &parameters) } ?? ""
        let rows = try await connection.query(
            """
            SELECT mesh_id::text, distance, metadata::text, content FROM (
                SELECT e.mesh_id, \(distanceSQL(metric: metric, query: "$2")) AS distance, e.metadata, e.content
                FROM intelligence_mesh.entries e JOIN intelligence_mesh.members m ON m.portal = e.publisher AND m.publish
                WHERE e.collection = $1 \(predicate)) AS scored
            ORDER BY distance NULLS LAST, mesh_id LIMIT $3::integer
            """, parameters
        ).rows
        _ = try await connection.preparedQuery("UPDATE intelligence_mesh.members SET queries = queries + 1 WHERE portal = $1", [portal])
        return rows.compactMap { row in
            guard row.count == 4, let id = row[0] else { return nil }
            return Hit(
                meshID: id, distance: row[1].flatMap { Double($0) } ?? .infinity, metadata: row[2].flatMap { JSONValue.object(json: Array($0.utf8)) } ?? [:],
                content: row[3])
        }
    }

    /// Counts of the copies of `name` per value of the metadata `path`, only for groups of at
    /// least `minimum` copies; also how many smaller groups were withheld.
    public static func aggregates(
        _ name: String, path: [String], minimum: Int, portal: String, _ connection: PostgresConnection
    ) async throws -> (groups: [(value: String, count: Int)], withheld: Int) {
        let member = try await connection.preparedQuery("SELECT search FROM intelligence_mesh.members WHERE portal = $1", [portal]).scalar
        guard member == "t" else { throw Refusal.notOptedIn("searching") }
        let rows = try await connection.preparedQuery(
            """
            SELECT value, n FROM (
                SELECT e.metadata #>> $2::text[] AS value, count(*) AS n
                FROM intelligence_mesh.entries e JOIN intelligence_mesh.members m ON m.portal = e.publisher AND m.publish
                WHERE e.collection = $1 AND e.metadata #> $2::text[] IS NOT NULL GROUP BY 1) AS g
            ORDER BY n DESC, value
            """, [name, SQL.textArray(path)]
        ).rows
        var groups: [(value: String, count: Int)] = []
        var withheld = 0
        for row in rows {
            guard row.count == 2, let value = row[0], let count = row[1].flatMap({ Int($0) }) else { continue }
            if count >= minimum { groups.append((value, count)) } else { withheld += 1 }
        }
        return (Array(groups.prefix(100)), withheld)
    }

    // MARK: - The portal side (its own database)

    /// The random mesh ids of these entries of the portal collection `uid` in the mesh
    /// collection `meshCollection`, assigned on first publish.
    public static func meshIDs(
        collection uid: Int64, ids: [String], meshCollection: String, _ connection: PostgresConnection
    ) async throws -> [String: String] {
        let json = String(decoding: try JSONValue.serialize(JSONValue.array(ids.map(JSONValue.string))), as: UTF8.self)
        let rows = try await connection.preparedQuery(
            """
            INSERT INTO intelligence.vector_published (collection, id, mesh_collection)
            SELECT $1::bigint, x, $2 FROM jsonb_array_elements_text($3::jsonb) AS x
            ON CONFLICT (collection, id, mesh_collection) DO UPDATE SET id = EXCLUDED.id
            RETURNING id, mesh_id::text
            """, [String(uid), meshCollection, json]
        ).rows
        var result: [String: String] = [:]
        for row in rows where row.count == 2 {
            if let id = row[0], let meshID = row[1] { result[id] = meshID }
        }
        return result
    }

    /// Forgets the mesh ids of these entries (all of the collection's when `ids` is nil, every
    /// collection's when `uid` is nil too); returns them by mesh collection.
    public static func forgetMeshIDs(
        collection uid: Int64?, ids: [String]?, meshCollection: String?, _ connection: PostgresConnection
    ) async throws -> [String:
        [String]]
    {
        let json = try ids.map { String(decoding: try JSONValue.serialize(JSONValue.array($0.map(JSONValue.string))), as: UTF8.self) }
        let rows = try await connection.preparedQuery(
            """
            DELETE FROM intelligence.vector_published
            WHERE ($1::bigint IS NULL OR collection = $1::bigint) AND ($2::text IS NULL OR mesh_collection = $2)
              AND ($3::jsonb IS NULL OR id IN (SELECT jsonb_array_elements_text($3::jsonb)))
            RETURNING mesh_collection, mesh_id::text
            """, [uid.map { String($0) }, meshCollection, json]
        ).rows
        var result: [String: [String]] = [:]
        for row in rows where row.count == 2 {
            if let mesh = row[0], let meshID = row[1] { result[mesh, default: []].append(meshID) }
        }
        return result
    }
}
