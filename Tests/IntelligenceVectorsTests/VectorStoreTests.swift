import MeltyJSON
import MeltyPostgres
import MeltyTestServices
import Testing

@testable import IntelligenceVectors

@Suite struct VectorStoreTests {
    private func database() async throws -> PostgresConnection {
        let connection = try await TestServices.connect(try TestServices.freshDatabase())
        _ = try await connection.execute("CREATE SCHEMA intelligence")
        _ = try await connection.execute(VectorStore.schema)
        _ = try await connection.execute(MeshFederation.portalSchema)
        // Idempotent: running the DDL again changes nothing.
        _ = try await connection.execute(VectorStore.schema)
        return connection
    }

    @Test func collectionsAreCreatedOnceAndDropped() async throws {
        let connection = try await database()
        defer { connection.close() }
        let created = try await VectorStore.create(name: "docs", dimension: 3, metric: "cosine", readAccess: .serviceRole, connection)
        #expect(created.dimension == 3)
        await #expect(throws: VectorStoreError.collectionExists("docs")) {
            try await VectorStore.create(name: "docs", dimension: 3, metric: "l2", readAccess: .anon, connection)
        }
        try await VectorStore.setReadAccess(.authenticated, of: "docs", connection)
        #expect(try await VectorStore.collection(named: "docs", connection)?.readAccess == .authenticated)
        let uid = try await VectorStore.drop("docs", connection)
        #expect(uid == created.uid)
        #expect(try await VectorStore.collections(connection).isEmpty)
        await #expect(throws: VectorStoreError.collectionNotFound("docs")) { try await VectorStore.drop("docs", connection) }
    }

    @Test func upsertDeleteAndChangesReplayInOrder() async throws {
        let connection = try await database()
        defer { connection.close() }
        let collection = try await VectorStore.create(name: "docs", dimension: 2, metric: "l2", readAccess: .serviceRole, connection)
        let first = try await VectorStore.upsert(
            [
                .init(id: "a", vector: [1, 0], metadata: ["topic": "x"], content: "the quick brown fox"),
                .init(id: "b", vector: [0, 1], content: "lazy dogs sleep"),
                .init(id: "a", vector: [1, 0.5], metadata: ["topic": "y"], content: "foxes jump quickly"),
            ], into: "docs", connection)
        #expect(first.map(\.id).sorted() == ["a", "b"])
        let all = try await VectorStore.changes(collection: collection.uid, after: 0, connection)
        #expect(all.written.count == 2)
        #expect(all.written.first { $0.label == first.first { $0.id == "a" }?.label }?.vector == [1, 0.5])
        let afterFirst = all.through

        let labelA = try #require(first.first { $0.id == "a" }?.label)
        let replaced = try await VectorStore.upsert([.init(id: "a", vector: [0.25, 0.75])], into: "docs", connection)
        #expect(replaced.first?.label == labelA, "a replaced entry keeps its label")
        let removed = try await VectorStore.delete(ids: ["b", "missing"], from: "docs", connection)
        #expect(removed.count == 1)

        let later = try await VectorStore.changes(collection: collection.uid, after: afterFirst, connection)
        #expect(later.written.map(\.label) == [labelA])
        #expect(later.written.first?.vector == [0.25, 0.75])
        #expect(later.removed == removed)
        #expect(later.through > afterFirst)
        let state = try await VectorStore.state(collection: collection.uid, connection)
        #expect(state.through == later.through)
        #expect(state.count == 1)

        try await VectorStore.pruneDeletions(collection: collection.uid, through: later.through, connection)
        #expect(try await VectorStore.changes(collection: collection.uid, after: afterFirst, connection).removed.isEmpty)
        #expect(try await VectorStore.collection(named: "docs", connection)?.prunedThrough == later.through)
    }

    @Test func changesArePagedWithoutLosingDeletions() async throws {
        let connection = try await database()
        defer { connection.close() }
        let collection = try await VectorStore.create(name: "paged", dimension: 1, metric: "l2", readAccess: .serviceRole, connection)
        _ = try await VectorStore.upsert((0..<5).map { .init(id: "e\($0)", vector: [Float($0)]) }, into: "paged", connection)
        _ = try await VectorStore.delete(ids: ["e0"], from: "paged", connection)
        _ = try await VectorStore.upsert((5..<8).map { .init(id: "e\($0)", vector: [Float($0)]) }, into: "paged", connection)
        var through: Int64 = 0
        var labels: Set<UInt64> = []
        var removed: [UInt64] = []
        while true {
            let page = try await VectorStore.changes(collection: collection.uid, after: through, limit: 3, connection)
            labels.formUnion(page.written.map(\.label))
            removed += page.removed
            through = page.through
            if !page.more { break }
        }
        #expect(labels.count == 7)
        #expect(removed.count == 1)
    }

    @Test func filtersFullTextAndEntriesByLabel() async throws {
        let connection = try await database()
        defer { connection.close() }
        let collection = try await VectorStore.create(name: "kb", dimension: 2, metric: "cosine", readAccess: .anon, connection)
        let written = try await VectorStore.upsert(
            [
                .init(id: "refund", vector: [1, 0], metadata: ["topic": "billing", "year": 2024], content: "How to get a refund for a cancelled order"),
                .init(id: "ship", vector: [0, 1], metadata: ["topic": "shipping"], content: "Shipping times for international orders"),
                .init(id: "odd 'id' \u{1F600}", vector: [1, 1], metadata: ["topic": "billing"], content: "Invoices are sent monthly"),
            ], into: "kb", connection)
        let billing = try await VectorStore.labels(collection: collection.uid, matching: .equals(path: ["topic"], value: "billing"), connection)
        #expect(billing.count == 2)
        let text = try await VectorStore.textSearch(collection: collection.uid, text: "refunds orders", filter: nil, limit: 10, connection)
        #expect(text.first?.label == written.first { $0.id == "refund" }?.label)
        let filtered = try await VectorStore.textSearch(
            collection: collection.uid, text: "orders", filter: .equals(path: ["topic"], value: "shipping"), limit: 10, connection)
        #expect(filtered.map(\.label) == written.filter { $0.id == "ship" }.map(\.label))
        let hostile = try await VectorStore.textSearch(collection: collection.uid, text: "' OR 1=1; DROP TABLE x; --", filter: nil, limit: 10, connection)
        #expect(hostile.isEmpty)
        let entries = try await VectorStore.entries(collection: collection.uid, ids: ["odd 'id' \u{1F600}"], connection)
        #expect(entries.first?.vector == [1, 1])
        #expect(entries.first?.metadata["topic"] == "billing")
    }

    @Test func floatArraysRoundTrip() {
        let vector: [Float] = [0, -1.5, 3.4028235e38, 1e-45, 0.1, -0.000123]
        #expect(VectorStore.parseFloatArray(VectorStore.floatArray(vector)) == vector)
        #expect(VectorStore.parseFloatArray("{1,NaN}") == nil)
        #expect(VectorStore.parseFloatArray("nope") == nil)
    }

    @Test func limitsRefuseHostileNamesAndIds() {
        for name in ["", "UPPER", "a b", "x;drop", String(repeating: "a", count: 64), "ü", "a\u{0}"] {
            #expect(!VectorCollectionLimits.isValidName(name), "\(name)")
        }
        #expect(VectorCollectionLimits.isValidName("support-articles_2"))
        #expect(VectorCollectionLimits.problem(withID: "a\u{0}b") != nil)
        #expect(VectorCollectionLimits.problem(withID: String(repeating: "é", count: 129)) != nil)
        #expect(VectorCollectionLimits.problem(withID: "ok 🙂") == nil)
        #expect(VectorCollectionLimits.problem(withVector: [1, .infinity], dimension: 2) != nil)
        #expect(VectorCollectionLimits.problem(withVector: [1e39, 0], dimension: 2) != nil)
        #expect(VectorCollectionLimits.problem(withVector: [1], dimension: 2) != nil)
    }
}
