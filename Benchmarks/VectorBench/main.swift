import Foundation
import IntelligenceVectors

// The in-process side of Benchmarks/vectors.sh: builds a VectorIndex on the base vectors the
// script wrote, runs the queries at each ef single-threaded, and prints one JSON object per ef
// (recall@k against the script's exact ground truth, queries per second).
//
//   bench-vectors --base base.f32 --queries queries.f32 --truth truth.i64 --dimension 128
//                 [--k 10] [--m 16] [--ef-construction 200] [--efs 16,32,64] [--repeats 3]
//
// Files are raw little-endian: float32 rows of `dimension`, int64 rows of `k` labels.

/// The command line, parsed.
struct BenchOptions {
    var base = ""
    var queries = ""
    var truth = ""
    var dimension = 0
    var k = 10
    var m = 16
    var efConstruction = 200
    var efs = [16, 32, 64, 128]
    var repeats = 3

    /// The options in `arguments` (CommandLine.arguments).
    init(arguments: [String]) throws {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next() else { throw BenchFailure("\(flag) needs a value") }
            switch flag {
            case "--base": base = value
            case "--queries": queries = value
            case "--truth": truth = value
            case "--dimension": dimension = try Self.integer(value, flag)
            case "--k": k = try Self.integer(value, flag)
            case "--m": m = try Self.integer(value, flag)
            case "--ef-construction": efConstruction = try Self.integer(value, flag)
            case "--efs": efs = try value.split(separator: ",").map { try Self.integer(String($0), flag) }
            case "--repeats": repeats = try Self.integer(value, flag)
            default: throw BenchFailure("unknown flag \(flag)")
            }
        }
        guard !base.isEmpty, !queries.isEmpty, !truth.isEmpty, dimension > 0, repeats > 0 else {
            throw BenchFailure("--base, --queries, --truth and --dimension are required")
        }
    }

    private static func integer(_ text: String, _ flag: String) throws -> Int {
        guard let value = Int(text), value > 0 else { throw BenchFailure("\(flag) takes a positive integer") }
        return value
    }
}

/// A refused command line or unreadable file.
struct BenchFailure: Error, CustomStringConvertible {
    /// What went wrong.
    let description: String
    /// A failure saying `description`.
    init(_ description: String) { self.description = description }
}

/// Rows of `width` little-endian scalars from the file at `path`.
func readRows<Scalar>(_ path: String, width: Int, as _: Scalar.Type) throws -> [[Scalar]] {
    guard let data = FileManager.default.contents(atPath: path) else { throw BenchFailure("cannot read \(path)") }
    let rowBytes = width * MemoryLayout<Scalar>.size
    guard data.count % rowBytes == 0 else { throw BenchFailure("\(path) is not a whole number of rows") }
    return data.withUnsafeBytes { raw in
        (0..<(data.count / rowBytes)).map { row in
            (0..<width).map { raw.loadUnaligned(fromByteOffset: row * rowBytes + $0 * MemoryLayout<Scalar>.size, as: Scalar.self) }
        }
    }
}

/// `duration` in seconds.
func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// Loads the files, builds the index, prints one JSON line per ef.
func run() throws {
    let options = try BenchOptions(arguments: CommandLine.arguments)
    let base = try readRows(options.base, width: options.dimension, as: Float.self)
    let queries = try readRows(options.queries, width: options.dimension, as: Float.self)
    let truth = try readRows(options.truth, width: options.k, as: Int64.self).map { Set($0.map { UInt64($0) }) }
    guard truth.count == queries.count else { throw BenchFailure("truth has \(truth.count) rows for \(queries.count) queries") }

    var parameters = VectorIndex.Parameters()
    parameters.m = options.m
    parameters.efConstruction = options.efConstruction
    let clock = ContinuousClock()
    let index = try VectorIndex(dimension: options.dimension, metric: .l2, capacity: base.count, parameters: parameters)
    let build = try clock.measure {
        for (label, vector) in base.enumerated() { try index.upsert(label: UInt64(label), vector: vector) }
    }

    for ef in options.efs {
        var found = 0
        var rates: [Double] = []
        for repeat_ in 0..<options.repeats {
            var hits: [[VectorSearchHit]] = []
            hits.reserveCapacity(queries.count)
            let elapsed = try clock.measure {
                for query in queries { hits.append(try index.search(query, k: options.k, ef: ef)) }
            }
            rates.append(Double(queries.count) / seconds(elapsed))
            if repeat_ == 0 {
                found = zip(hits, truth).reduce(0) { sum, pair in sum + pair.0.filter { pair.1.contains($0.label) }.count }
            }
        }
        let recall = Double(found) / Double(queries.count * options.k)
        let median = rates.sorted()[rates.count / 2]
        let runs = rates.map { String(format: "%.1f", $0) }.joined(separator: ", ")
        print(
            #"{"library": "meltybase", "n": \#(base.count), "ef": \#(ef), "recall": \#(String(format: "%.4f", recall)), "#
                + #""qps": \#(String(format: "%.1f", median)), "qps_runs": [\#(runs)], "build_s": \#(String(format: "%.2f", seconds(build))), "#
                + #""kernel": "\#(VectorIndex.distanceKernel)"}"#)
    }
}

do {
    try run()
} catch {
    FileHandle.standardError.write(Data("bench-vectors: \(error)\n".utf8))
    exit(2)
}
