import MeltyJSON
import MeltyPostgres
import MeltyTestServices
import Testing

@testable import IntelligenceVectors

@Suite struct VectorFilterTests {
    private func parse(_ json: String) throws -> VectorFilter {
        guard let value = JSONValue(json: Array(json.utf8)) else { throw VectorFilter.Problem(message: "not JSON") }
        return try VectorFilter.parse(value)
    }

    @Test func parsesEqualityOperatorsAndCombinators() throws {
        #expect(try parse(#"{"topic": "billing"}"#) == .equals(path: ["topic"], value: "billing"))
        #expect(try parse(#"{"a.b": {"$gt": 3}}"#) == .compare(path: ["a", "b"], operator: "$gt", value: 3))
        #expect(
            try parse(#"{"$or": [{"x": 1}, {"y": {"$in": [1, 2]}}]}"#)
                == .any([.equals(path: ["x"], value: 1), .oneOf(path: ["y"], values: [1, 2])]))
    }

    @Test func refusesBadFilters() {
        for bad in [
            #"[]"#, #"{"$foo": 1}"#, #"{"x": {"$regex": "a"}}"#, #"{"x": {"$in": 3}}"#, #"{"x": {"$gt": true}}"#, #"{"x": {"$exists": 1}}"#,
            #"{"": 1}"#, #"{"a..b": 1}"#, #"{"x": [1, 2]}"#, #"{"$and": []}"#, #"{"x": "a\u0000b"}"#,
        ] {
            #expect(throws: VectorFilter.Problem.self, "\(bad)") { try parse(bad) }
        }
        var deep = #"{"x": 1}"#
        for _ in 0..<12 { deep = #"{"$not": "# + deep + "}" }
        #expect(throws: VectorFilter.Problem.self) { try parse(deep) }
    }

    /// Runs the filter's SQL against rows in a real Postgres and returns the matching ids.
    private func matching(_ json: String, _ connection: PostgresConnection) async throws -> [String] {
        var parameters: [String?] = []
        let predicate = try parse(json).sql(column: "metadata", parameters: &parameters)
        return try await connection.query("SELECT id FROM docs WHERE \(predicate) ORDER BY id", parameters).rows.compactMap { $0.first ?? nil }
    }

    @Test func sqlMatchesWhatTheGrammarSays() async throws {
        let connection = try await TestServices.connect(try TestServices.freshDatabase())
        defer { connection.close() }
        _ = try await connection.execute(
            """
            CREATE TABLE docs (id text PRIMARY KEY, metadata jsonb NOT NULL);
            INSERT INTO docs VALUES
              ('a', '{"topic": "billing", "year": 2021, "tags": "x", "author": {"country": "fr"}}'),
              ('b', '{"topic": "billing", "year": 2023, "lang": "en"}'),
              ('c', '{"topic": "shipping", "year": "2024", "lang": "de"}'),
              ('d', '{"topic": "Robert''); DROP TABLE docs; --", "year": 1e300}');
            """)
        #expect(try await matching(#"{"topic": "billing"}"#, connection) == ["a", "b"])
        #expect(try await matching(#"{"year": {"$gte": 2022}}"#, connection) == ["b", "d"])
        #expect(try await matching(#"{"year": {"$gt": "2023"}}"#, connection) == ["c"])
        #expect(try await matching(#"{"lang": {"$in": ["de", "fr"]}}"#, connection) == ["c"])
        #expect(try await matching(#"{"lang": {"$nin": ["de"]}}"#, connection) == ["a", "b", "d"])
        #expect(try await matching(#"{"lang": {"$ne": "en"}}"#, connection) == ["a", "c", "d"])
        #expect(try await matching(#"{"lang": {"$exists": false}}"#, connection) == ["a", "d"])
        #expect(try await matching(#"{"author.country": "fr"}"#, connection) == ["a"])
        #expect(try await matching(#"{"$or": [{"topic": "shipping"}, {"year": {"$lt": 2022}}]}"#, connection) == ["a", "c"])
        #expect(try await matching(#"{"$not": {"topic": "billing"}}"#, connection) == ["c", "d"])
        #expect(try await matching(#"{"topic": "Robert'); DROP TABLE docs; --"}"#, connection) == ["d"])
        #expect(try await matching(#"{"year": {"$lt": 1e308}}"#, connection) == ["a", "b", "d"])
        #expect(try await matching(#"{"topic": "billing", "year": {"$lt": 2022}}"#, connection) == ["a"])
    }
}
