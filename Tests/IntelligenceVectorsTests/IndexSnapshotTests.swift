import Foundation
import Testing

@testable import IntelligenceVectors

@Suite struct IndexSnapshotTests {
    /// A fresh directory for one test's files.
    private func scratchDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("index-snapshot-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    private func populatedIndex(metric: VectorMetric = .cosine) throws -> (VectorIndex, [[Float]]) {
        var random = SeededRandom(seed: 23)
        let base = random.vectors(count: 2000, dimension: 24)
        let index = try VectorIndex(dimension: 24, metric: metric, capacity: 100)
        try index.upsert(batch: base.enumerated().map { (UInt64($0.offset) * 1_000_003, $0.element) })
        for label in stride(from: 0, to: 2000, by: 7) { try index.remove(label: UInt64(label) * 1_000_003) }
        return (index, base)
    }

    @Test(arguments: VectorMetric.allCases)
    func saveAndLoadGiveIdenticalResults(metric: VectorMetric) throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("index.hnsw").path
        let (index, base) = try populatedIndex(metric: metric)
        try index.save(to: path, tag: 4242)

        let snapshot = try IndexSnapshot.read(at: path)
        #expect(snapshot.metric == metric && snapshot.dimension == 24 && snapshot.tag == 4242)
        #expect(snapshot.count == index.count && snapshot.removed == 286 && snapshot.m == 16)

        let loaded = try VectorIndex.load(from: path, dimension: 24, metric: metric)
        #expect(loaded.count == index.count)
        #expect(loaded.capacity == index.capacity)
        for query in base.prefix(50) {
            #expect(try loaded.search(query, k: 10) == index.search(query, k: 10))
            #expect(try loaded.search(query, k: 5, allowed: { $0 % 2 == 0 }) == index.search(query, k: 5, allowed: { $0 % 2 == 0 }))
        }
        // The loaded index keeps working: removals stay removed, upserts land.
        #expect(!loaded.contains(label: 0))
        try loaded.upsert(label: 0, vector: base[0])
        #expect(try loaded.search(base[0], k: 1).first?.label == 0)
        // No temporary file is left next to the snapshot.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["index.hnsw"])
    }

    @Test func emptyIndexRoundTrips() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("empty.hnsw").path
        try VectorIndex(dimension: 3, metric: .l2, capacity: 10).save(to: path)
        let loaded = try VectorIndex.load(from: path, dimension: 3, metric: .l2)
        #expect(loaded.count == 0)
        #expect(try loaded.search([1, 2, 3], k: 4).isEmpty)
        try loaded.upsert(label: 9, vector: [1, 2, 3])
        #expect(try loaded.search([1, 2, 3], k: 4).map(\.label) == [9])
    }

    @Test func saveReplacesAnExistingSnapshot() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("index.hnsw").path
        let (index, _) = try populatedIndex()
        try index.save(to: path, tag: 1)
        try index.upsert(label: 77, vector: [Float](repeating: 1, count: 24))
        try index.save(to: path, tag: 2)
        #expect(try IndexSnapshot.read(at: path).tag == 2)
        #expect(try VectorIndex.load(from: path, dimension: 24, metric: .cosine).contains(label: 77))
    }

    @Test func damagedSnapshotsThrowInsteadOfCrashing() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("index.hnsw").path
        let (index, _) = try populatedIndex()
        try index.save(to: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))

        var damaged: [(String, Data)] = [
            ("empty", Data()),
            ("header only", good.prefix(96)),
            ("truncated by one byte", good.dropLast()),
            ("truncated in half", good.prefix(good.count / 2)),
            ("trailing byte", good + Data([0])),
            ("garbage", Data((0..<good.count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) })),
            ("text", Data("SELECT * FROM vectors; -- \u{0}\u{FEFF}".utf8)),
        ]
        // Single flipped bytes across the header and body (the checksum catches them).
        for offset in [0, 9, 17, 40, 70, 100, 500, good.count / 3, good.count - 5] {
            var copy = good
            copy[offset] ^= 0x5A
            damaged.append(("byte \(offset) flipped", copy))
        }
        // A huge element count in an otherwise valid header.
        var huge = good
        huge.replaceSubrange(48..<56, with: withUnsafeBytes(of: UInt64(1) << 40) { Data($0) })
        damaged.append(("huge element count", huge))

        for (name, bytes) in damaged {
            let file = directory.appendingPathComponent("damaged.hnsw").path
            try bytes.write(to: URL(fileURLWithPath: file))
            let error = try #require(throws: VectorIndexError.self, "\(name) loaded") {
                try VectorIndex.load(from: file, dimension: 24, metric: .cosine)
            }
            #expect(error.kind == .corrupt, "\(name): \(error)")
        }
    }

    @Test func wrongDimensionMetricOrPathThrow() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("index.hnsw").path
        let (index, _) = try populatedIndex()
        try index.save(to: path)

        let wrongDimension = try #require(throws: VectorIndexError.self) {
            try VectorIndex.load(from: path, dimension: 25, metric: .cosine)
        }
        #expect(wrongDimension.kind == .mismatch)
        let wrongMetric = try #require(throws: VectorIndexError.self) {
            try VectorIndex.load(from: path, dimension: 24, metric: .l2)
        }
        #expect(wrongMetric.kind == .mismatch)
        let missing = try #require(throws: VectorIndexError.self) {
            try VectorIndex.load(from: path + ".missing", dimension: 24, metric: .cosine)
        }
        #expect(missing.kind == .io)
        #expect(throws: VectorIndexError.self) { try VectorIndex.load(from: directory.path, dimension: 24, metric: .cosine) }
        #expect(throws: VectorIndexError.self) { try VectorIndex.load(from: "", dimension: 24, metric: .cosine) }
        #expect(throws: VectorIndexError.self) { try index.save(to: path + "\u{0}evil") }
        #expect(throws: VectorIndexError.self) { try index.save(to: directory.path + "/no/such/dir/x.hnsw") }
        #expect(throws: VectorIndexError.self) { try IndexSnapshot.read(at: path + ".missing") }
    }
}
