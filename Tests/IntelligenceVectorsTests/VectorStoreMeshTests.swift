import Foundation
import MeltyJSON
import MeltyPostgres
import MeltyTestServices
import Testing

@testable import IntelligenceVectors

/// The hub's side of the federated mesh (``MeshFederation``) against a real Postgres.
@Suite struct VectorStoreMeshTests {
    private func hub() async throws -> PostgresConnection {
        let connection = try await TestServices.connect(try TestServices.freshDatabase())
        try await MeshFederation.install(connection)
        try await MeshFederation.install(connection)
        return connection
    }

    private func copy(_ vector: [Float], topic: String, content: String = "text") -> MeshFederation.Copy {
        MeshFederation.Copy(meshID: UUID().uuidString.lowercased(), vector: vector, metadata: ["topic": .string(topic)], content: content)
    }

    @Test func membershipGatesPublishingAndSearching() async throws {
        let connection = try await hub()
        defer { connection.close() }
        #expect(try await MeshFederation.membership(of: "a", connection) == nil)
        await #expect(throws: MeshFederation.Refusal.notOptedIn("publishing")) {
            try await MeshFederation.publish([copy([1, 0], topic: "x")], to: "m", dimension: 2, metric: "l2", from: "a", connection)
        }
        _ = try await MeshFederation.setMembership(of: "a", publish: true, search: false, connection)
        #expect(try await MeshFederation.publish([copy([1, 0], topic: "x")], to: "m", dimension: 2, metric: "l2", from: "a", connection) == 1)
        await #expect(throws: MeshFederation.Refusal.notOptedIn("searching")) {
            try await MeshFederation.search("m", vector: [1, 0], k: 5, filter: nil, portal: "a", connection)
        }
        await #expect(throws: MeshFederation.Refusal.notOptedIn("searching")) {
            try await MeshFederation.search("m", vector: [1, 0], k: 5, filter: nil, portal: "never-joined", connection)
        }
        let clash = await #expect(throws: MeshFederation.Refusal.self) {
            try await MeshFederation.publish([copy([1, 0, 0], topic: "x")], to: "m", dimension: 3, metric: "l2", from: "a", connection)
        }
        #expect(clash?.description.contains("2-dimensional l2") == true)
        _ = try await MeshFederation.setMembership(of: "b", publish: false, search: true, connection)
        #expect(try await MeshFederation.search("m", vector: [1, 0], k: 5, filter: nil, portal: "b", connection).count == 1)
        // Opting out of publishing deletes the copies; leaving entirely removes the member row.
        let out = try await MeshFederation.setMembership(of: "a", publish: false, search: true, connection)
        #expect(out.publishedEntries == 0)
        #expect(try await MeshFederation.search("m", vector: [1, 0], k: 5, filter: nil, portal: "b", connection).isEmpty)
        _ = try await MeshFederation.setMembership(of: "a", publish: false, search: false, connection)
        #expect(try await MeshFederation.membership(of: "a", connection) == nil)
        #expect(try await connection.query("SELECT count(*) FROM intelligence_mesh.members WHERE portal = 'a'").scalar == "0")
    }

    @Test(arguments: ["l2", "inner_product", "cosine"])
    func searchDistancesMatchTheIndexDefinitions(metric: String) async throws {
        let connection = try await hub()
        defer { connection.close() }
        _ = try await MeshFederation.setMembership(of: "a", publish: true, search: true, connection)
        var generator = SystemRandomNumberGenerator()
        let vectors: [[Float]] = (0..<40).map { _ in (0..<6).map { _ in Float.random(in: -1...1, using: &generator) } }
        let copies = vectors.enumerated().map { index, vector in copy(vector, topic: index % 2 == 0 ? "even" : "odd", content: "v\(index)") }
        _ = try await MeshFederation.publish(copies, to: "m", dimension: 6, metric: metric, from: "a", connection)
        let query = vectors[7].map { $0 * 0.9 + 0.01 }
        func distance(_ vector: [Float]) -> Double {
            let dot = zip(vector, query).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            switch metric {
            case "l2": return zip(vector, query).reduce(0.0) { $0 + pow(Double($1.0) - Double($1.1), 2) }
            case "inner_product": return 1 - dot
            default:
                let norms = sqrt(vector.reduce(0.0) { $0 + Double($1 * $1) }) * sqrt(query.reduce(0.0) { $0 + Double($1 * $1) })
                return 1 - dot / norms
            }
        }
        let expected = vectors.enumerated().map { ("v\($0.offset)", distance($0.element)) }.sorted { $0.1 < $1.1 }.prefix(5)
        let hits = try await MeshFederation.search("m", vector: query, k: 5, filter: nil, portal: "a", connection)
        #expect(hits.map(\.content) == expected.map(\.0))
        for (hit, want) in zip(hits, expected) { #expect(abs(hit.distance - want.1) < 1e-4) }
        let odd = try await MeshFederation.search("m", vector: query, k: 40, filter: .equals(path: ["topic"], value: "odd"), portal: "a", connection)
        #expect(odd.count == 20)
    }

    @Test func aggregatesWithholdSmallGroupsAndUnpublishIsPerPublisher() async throws {
        let connection = try await hub()
        defer { connection.close() }
        _ = try await MeshFederation.setMembership(of: "a", publish: true, search: true, connection)
        _ = try await MeshFederation.setMembership(of: "b", publish: true, search: true, connection)
        let fromA = (0..<6).map { _ in copy([1, 0], topic: "login") } + (0..<2).map { _ in copy([0, 1], topic: "billing") }
        let fromB = (0..<3).map { _ in copy([1, 1], topic: "billing") }
        _ = try await MeshFederation.publish(fromA, to: "m", dimension: 2, metric: "l2", from: "a", connection)
        _ = try await MeshFederation.publish(fromB, to: "m", dimension: 2, metric: "l2", from: "b", connection)
        var result = try await MeshFederation.aggregates("m", path: ["topic"], minimum: 5, portal: "a", connection)
        #expect(result.groups.map(\.value) == ["login", "billing"])
        #expect(result.groups.map(\.count) == [6, 5])
        #expect(result.withheld == 0)
        // B may not withdraw A's copies, nor overwrite them by publishing their ids.
        #expect(try await MeshFederation.unpublish(meshIDs: fromA.map(\.meshID), from: "m", portal: "b", connection) == 0)
        #expect(try await MeshFederation.publish([fromA[0]], to: "m", dimension: 2, metric: "l2", from: "b", connection) == 0)
        #expect(try await MeshFederation.unpublish(meshIDs: fromB.map(\.meshID), from: "m", portal: "b", connection) == 3)
        result = try await MeshFederation.aggregates("m", path: ["topic"], minimum: 5, portal: "a", connection)
        #expect(result.groups.map(\.value) == ["login"])
        #expect(result.withheld == 1)
        let summary = try await MeshFederation.collections(connection)
        #expect(summary == [MeshFederation.CollectionSummary(name: "m", dimension: 2, metric: "l2", entries: 8, publishers: 1)])
    }
}
