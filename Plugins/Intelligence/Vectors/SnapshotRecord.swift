import Foundation

/// The sidecar of an index snapshot (`<collection>.json` beside `<collection>.hnsw`): which
/// incarnation of the collection it is and the last change it includes. Written after the
/// index file, so a crash between the two leaves an older record, whose later changes are
/// simply applied again.
struct SnapshotRecord: Codable, Sendable, Equatable {
    /// The collection's uid (a recreated collection never uses an old snapshot).
    var uid: Int64
    /// The last change number the snapshot includes.
    var through: Int64
    /// Entries in the snapshot.
    var count: Int
    /// The collection's dimension.
    var dimension: Int
    /// The collection's metric.
    var metric: String

    /// The record at `path`, or nil when it is missing or unreadable.
    static func read(at path: String) -> SnapshotRecord? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(SnapshotRecord.self, from: data)
    }

    /// Writes the record atomically.
    func write(to path: String) throws {
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
