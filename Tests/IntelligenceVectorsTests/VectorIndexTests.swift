import Dispatch
import Synchronization
import Testing

@testable import IntelligenceVectors

@Suite struct VectorIndexTests {
    @Test func libraryLoads() {
        #expect(VectorIndex.libraryVersion.contains("hnswlib"))
        #expect(["avx512", "avx2", "generic"].contains(VectorIndex.distanceKernel))
    }

    @Test(arguments: VectorMetric.allCases)
    func recallAtTenAgainstBruteForce(metric: VectorMetric) throws {
        var random = SeededRandom(seed: 7)
        let base = random.vectors(count: 5000, dimension: 32)
        let queries = random.vectors(count: 100, dimension: 32)
        let index = try VectorIndex(dimension: 32, metric: metric, capacity: 1024)
        try index.upsert(batch: base.enumerated().map { (UInt64($0.offset), $0.element) })
        #expect(index.count == 5000)
        #expect(index.capacity >= 5000)

        var found = 0
        for query in queries {
            let truth = Set(bruteForce(query, in: base, metric: metric, k: 10))
            let hits = try index.search(query, k: 10)
            #expect(hits.count == 10)
            found += hits.filter { truth.contains($0.label) }.count
        }
        let recall = Double(found) / Double(queries.count * 10)
        #expect(recall >= 0.95, "recall@10 for \(metric) was \(recall)")
    }

    @Test(arguments: VectorMetric.allCases)
    func exactSearchMatchesSwiftDistances(metric: VectorMetric) throws {
        var random = SeededRandom(seed: 11)
        let base = random.vectors(count: 300, dimension: 19)
        let index = try VectorIndex(dimension: 19, metric: metric, capacity: 300)
        try index.upsert(batch: base.enumerated().map { (UInt64($0.offset), $0.element) })
        let query = random.vector(dimension: 19)
        let hits = try index.exactSearch(query, k: 20)
        #expect(hits.count == 20)
        #expect(hits.map(\.distance) == hits.map(\.distance).sorted())
        for hit in hits {
            let expected = distance(query, base[Int(hit.label)], metric: metric)
            #expect(abs(hit.distance - expected) < 1e-4)
        }
        #expect(hits.map(\.label) == bruteForce(query, in: base, metric: metric, k: 20))
    }

    @Test func searchReturnsNearestFirstAndAtMostCount() throws {
        let index = try VectorIndex(dimension: 2, metric: .l2, capacity: 4)
        #expect(try index.search([0, 0], k: 5).isEmpty)
        try index.upsert(label: 30, vector: [3, 0])
        try index.upsert(label: 10, vector: [1, 0])
        try index.upsert(label: 20, vector: [2, 0])
        let hits = try index.search([0, 0], k: 5)
        #expect(hits == [.init(label: 10, distance: 1), .init(label: 20, distance: 4), .init(label: 30, distance: 9)])
    }

    @Test func upsertReplacesTheVector() throws {
        var random = SeededRandom(seed: 3)
        let index = try VectorIndex(dimension: 8, metric: .l2, capacity: 64)
        for label in 0..<50 { try index.upsert(label: UInt64(label), vector: random.vector(dimension: 8)) }
        let moved: [Float] = [50, 50, 50, 50, 50, 50, 50, 50]
        try index.upsert(label: 7, vector: moved)
        #expect(index.count == 50)
        let hit = try #require(try index.search(moved, k: 1).first)
        #expect(hit == VectorSearchHit(label: 7, distance: 0))
        // Near the origin, label 7 is now the farthest vector.
        let all = try index.search([0, 0, 0, 0, 0, 0, 0, 0], k: 50)
        #expect(all.last?.label == 7)
    }

    @Test func removeHidesAndUpsertRevives() throws {
        var random = SeededRandom(seed: 5)
        let base = random.vectors(count: 500, dimension: 16)
        let index = try VectorIndex(dimension: 16, metric: .cosine, capacity: 500)
        try index.upsert(batch: base.enumerated().map { (UInt64($0.offset), $0.element) })
        for label in stride(from: 0, to: 500, by: 2) { try index.remove(label: UInt64(label)) }
        try index.remove(label: 0)  // again: no-op
        try index.remove(label: 123_456)  // unknown: no-op
        #expect(index.count == 250)
        #expect(!index.contains(label: 4))
        #expect(index.contains(label: 5))
        for query in base.prefix(40) {
            let hits = try index.search(query, k: 10)
            #expect(hits.count == 10)
            #expect(hits.allSatisfy { $0.label % 2 == 1 })
        }
        try index.upsert(label: 4, vector: base[4])
        #expect(index.contains(label: 4))
        #expect(try index.search(base[4], k: 1).first?.label == 4)
        #expect(index.count == 251)
    }

    @Test func removingEverythingLeavesNoHits() throws {
        let index = try VectorIndex(dimension: 3, metric: .innerProduct, capacity: 8)
        for label in 0..<5 { try index.upsert(label: UInt64(label), vector: [Float(label), 1, 2]) }
        for label in 0..<5 { try index.remove(label: UInt64(label)) }
        #expect(index.count == 0)
        #expect(try index.search([1, 1, 1], k: 3).isEmpty)
    }

    @Test func filteredSearchReturnsKAllowedLabels() throws {
        var random = SeededRandom(seed: 13)
        let base = random.vectors(count: 5000, dimension: 32)
        let index = try VectorIndex(dimension: 32, metric: .l2, capacity: 5000)
        try index.upsert(batch: base.enumerated().map { (UInt64($0.offset), $0.element) })
        let queries = random.vectors(count: 20, dimension: 32)

        // Half of the labels allowed: the graph walk fills k.
        for query in queries {
            let hits = try index.search(query, k: 10, allowed: { $0 % 2 == 0 })
            #expect(hits.count == 10)
            #expect(hits.allSatisfy { $0.label % 2 == 0 })
        }
        // Thirty allowed labels out of 5000: k of them, exactly the nearest allowed ones.
        let few = Set((0..<30).map { UInt64($0 * 163) })
        for query in queries {
            let hits = try index.search(query, k: 10, allowed: { few.contains($0) })
            #expect(hits.count == 10)
            let exact = try index.exactSearch(query, k: 10, allowed: { few.contains($0) })
            #expect(hits.map(\.label) == exact.map(\.label))
        }
        // Fewer allowed labels than k: all of them.
        let three: Set<UInt64> = [1, 2_000, 4_999]
        let hits = try index.search(queries[0], k: 10, allowed: { three.contains($0) })
        #expect(Set(hits.map(\.label)) == three)
        // Nothing allowed.
        #expect(try index.search(queries[0], k: 10, allowed: { _ in false }).isEmpty)
    }

    @Test func indexGrowsByDoubling() throws {
        let index = try VectorIndex(dimension: 4, metric: .l2, capacity: 1)
        for label in 0..<100 { try index.upsert(label: UInt64(label), vector: [Float(label), 0, 0, 0]) }
        #expect(index.count == 100)
        #expect(index.capacity == 128)
        #expect(try index.search([42, 0, 0, 0], k: 1).first?.label == 42)
        try index.reserve(capacity: 1000)
        #expect(index.capacity == 1000)
        #expect(throws: VectorIndexError.self) { try index.reserve(capacity: 50) }
    }

    @Test func labelsSpanTheWholeUInt64Range() throws {
        let index = try VectorIndex(dimension: 2, metric: .l2, capacity: 4)
        try index.upsert(label: .max, vector: [1, 1])
        try index.upsert(label: 0, vector: [5, 5])
        #expect(try index.search([1, 1], k: 1).first?.label == .max)
        try index.remove(label: .max)
        #expect(try index.search([1, 1], k: 1).first?.label == 0)
    }

    @Test func badInputsThrow() throws {
        let index = try VectorIndex(dimension: 4, metric: .cosine, capacity: 16)
        try index.upsert(label: 1, vector: [1, 2, 3, 4])
        let refused: [(String, () throws -> Void)] = [
            ("short vector", { try index.upsert(label: 2, vector: [1, 2, 3]) }),
            ("long vector", { try index.upsert(label: 2, vector: [1, 2, 3, 4, 5]) }),
            ("NaN", { try index.upsert(label: 2, vector: [1, .nan, 3, 4]) }),
            ("infinity", { try index.upsert(label: 2, vector: [1, 2, -.infinity, 4]) }),
            ("zero vector for cosine", { try index.upsert(label: 2, vector: [0, 0, 0, 0]) }),
            ("overflowing norm", { try index.upsert(label: 2, vector: [.greatestFiniteMagnitude, 1, 1, 1]) }),
            ("batch with a short vector", { try index.upsert(batch: [(3, [1, 2, 3, 4]), (4, [1])]) }),
            ("batch with NaN", { try index.upsert(batch: [(3, [1, 2, 3, 4]), (4, [1, 2, 3, .nan])]) }),
            ("query of wrong dimension", { _ = try index.search([1, 2], k: 1) }),
            ("NaN query", { _ = try index.search([.nan, 1, 1, 1], k: 1) }),
            ("k 0", { _ = try index.search([1, 2, 3, 4], k: 0) }),
            ("k negative", { _ = try index.search([1, 2, 3, 4], k: -1) }),
            ("k 10^9", { _ = try index.search([1, 2, 3, 4], k: 1_000_000_000) }),
            ("ef 0", { _ = try index.search([1, 2, 3, 4], k: 1, ef: 0) }),
            ("ef Int.max", { _ = try index.search([1, 2, 3, 4], k: 1, ef: .max) }),
            ("dimension 0", { _ = try VectorIndex(dimension: 0, metric: .l2, capacity: 1) }),
            ("dimension 100000", { _ = try VectorIndex(dimension: 100_000, metric: .l2, capacity: 1) }),
            ("dimension negative", { _ = try VectorIndex(dimension: -4, metric: .l2, capacity: 1) }),
            ("capacity 0", { _ = try VectorIndex(dimension: 4, metric: .l2, capacity: 0) }),
            ("capacity Int.max", { _ = try VectorIndex(dimension: 4, metric: .l2, capacity: .max) }),
            ("capacity beyond 64 GiB", { _ = try VectorIndex(dimension: 4096, metric: .l2, capacity: 1 << 24) }),
            ("M 1", { _ = try VectorIndex(dimension: 4, metric: .l2, capacity: 1, parameters: .with(m: 1)) }),
            ("M 100000", { _ = try VectorIndex(dimension: 4, metric: .l2, capacity: 1, parameters: .with(m: 100_000)) }),
        ]
        for (name, body) in refused {
            #expect(throws: VectorIndexError.self, "\(name) was accepted") { try body() }
        }
        // Nothing refused changed the index.
        #expect(index.count == 1)
        #expect(!index.contains(label: 2) && !index.contains(label: 3))
        let error = try #require(throws: VectorIndexError.self) { try index.upsert(label: 2, vector: [1, .nan, 3, 4]) }
        #expect(error.kind == .invalidArgument)
        #expect(error.message.contains("not a finite number"))
    }

    @Test func concurrentSearchesUpsertsAndRemoves() throws {
        var random = SeededRandom(seed: 17)
        let base = random.vectors(count: 2000, dimension: 16)
        let extra = random.vectors(count: 2000, dimension: 16)
        let queries = random.vectors(count: 50, dimension: 16)
        let index = try VectorIndex(dimension: 16, metric: .l2, capacity: 256)
        try index.upsert(batch: base.enumerated().map { (UInt64($0.offset), $0.element) })
        let failures = Mutex<[String]>([])

        DispatchQueue.concurrentPerform(iterations: 6) { worker in
            do {
                switch worker {
                case 0:  // grows the index while the others search
                    for (offset, vector) in extra.enumerated() { try index.upsert(label: UInt64(2000 + offset), vector: vector) }
                case 1:  // replaces and removes existing labels
                    for label in 0..<500 {
                        try index.upsert(label: UInt64(label), vector: extra[label])
                        try index.remove(label: UInt64(1000 + label))
                    }
                default:
                    for round in 0..<20 {
                        for query in queries {
                            let hits = try index.search(query, k: 10, allowed: round % 2 == 0 ? nil : { $0 % 3 != 0 })
                            if hits.count != 10 || hits.map(\.distance) != hits.map(\.distance).sorted() {
                                failures.withLock { $0.append("worker \(worker): bad hits \(hits)") }
                            }
                        }
                    }
                }
            } catch {
                failures.withLock { $0.append("worker \(worker): \(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        #expect(index.count == 3500)
        #expect(!index.contains(label: 1000) && index.contains(label: 3999))
        // Label 10 was replaced by extra[10], which label 2010 also holds.
        #expect(Set(try index.search(extra[10], k: 2).map(\.label)) == [10, 2010])
    }
}

extension VectorIndex.Parameters {
    /// Default parameters with `m` replaced.
    static func with(m: Int) -> Self {
        var parameters = Self()
        parameters.m = m
        return parameters
    }
}

/// A deterministic generator (SplitMix64) for test vectors.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A vector with components uniform in -1...1.
    mutating func vector(dimension: Int) -> [Float] {
        (0..<dimension).map { _ in Float.random(in: -1...1, using: &self) }
    }

    /// `count` such vectors.
    mutating func vectors(count: Int, dimension: Int) -> [[Float]] {
        (0..<count).map { _ in vector(dimension: dimension) }
    }
}

/// The metric's distance, computed in Swift (independently of the shim's kernels).
func distance(_ a: [Float], _ b: [Float], metric: VectorMetric) -> Float {
    switch metric {
    case .l2:
        return zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
    case .innerProduct:
        return 1 - zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
    case .cosine:
        let dot = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
        let norms = (a.reduce(0) { $0 + $1 * $1 } * b.reduce(0) { $0 + $1 * $1 }).squareRoot()
        return 1 - dot / norms
    }
}

/// The labels (positions in `base`) of the k nearest vectors, nearest first.
func bruteForce(_ query: [Float], in base: [[Float]], metric: VectorMetric, k: Int) -> [UInt64] {
    base.indices
        .map { (label: UInt64($0), distance: distance(query, base[$0], metric: metric)) }
        .sorted { $0.distance < $1.distance }
        .prefix(k)
        .map(\.label)
}
