import Foundation
import MeltyPluginSDK

/// The keys of `[plugins.intelligence.config]` that the Knowledge Mesh read.
struct VectorSettings: Sendable {
    /// The keys this part reads.
    static let keys: Set<String> = ["index_dir", "snapshot_delay_ms", "mesh_min_group_size", "index_memory_mb", "broad_filter_entries"]

    /// Where index snapshots are written (`<index_dir>/<portal>/<collection>.hnsw`); default
    /// `.meltybase/intelligence/vectors` below the kernel's working directory.
    let indexDirectory: String
    /// How long after a change a snapshot is written (changes meanwhile share it).
    let snapshotDelay: Duration
    /// The smallest group a mesh aggregate reports.
    let meshMinGroupSize: Int
    /// The memory one portal's loaded indexes may take, in bytes (`index_memory_mb`, default
    /// 512): the least recently used indexes are unloaded to make room, and a collection
    /// that alone would exceed it takes no more entries.
    let indexMemoryBytes: Int
    /// Above this many entries admitted by a query's filter, the filter checks the index's
    /// nearest candidates instead of guiding the search (`broad_filter_entries`, default 100,000).
    let broadFilterEntries: Int

    /// Reads and range-checks this part's keys.
    init(config: PluginConfig) throws {
        let directory = try config.string("index_dir", plugin: "intelligence") ?? ".meltybase/intelligence/vectors"
        guard !directory.isEmpty, !directory.contains("\u{0}") else { throw PluginError.invalid("intelligence: config key 'index_dir' must be a path") }
        indexDirectory = URL(fileURLWithPath: directory, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardized.path
        snapshotDelay = .milliseconds(try config.integer("snapshot_delay_ms", in: 0...600_000, plugin: "intelligence") ?? 2_000)
        meshMinGroupSize = try config.integer("mesh_min_group_size", in: 2...1_000, plugin: "intelligence") ?? 5
        indexMemoryBytes = (try config.integer("index_memory_mb", in: 1...1_048_576, plugin: "intelligence") ?? 512) << 20
        broadFilterEntries = try config.integer("broad_filter_entries", in: 1...10_000_000, plugin: "intelligence") ?? 100_000
    }
}
