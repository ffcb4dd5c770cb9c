import MeltyJSON

/// Who is present on one channel: entries by presence key, each with the metas its clients
/// tracked (`{"phx_ref": ..., <user payload>}`), and where each entry lives (kernel and
/// connection) so a closed connection or a dead kernel takes exactly its own entries away.
public struct PresenceTable: Sendable {
    /// One tracked presence.
    public struct Entry: Sendable, Equatable, Codable {
        /// The presence key (`config.presence.key`, or generated per connection).
        public var key: String
        /// Unique reference of this meta.
        public var ref: String
        /// The meta object as JSON: `{"phx_ref":ref, ...the tracked payload}`.
        public var meta: [UInt8]
        /// The kernel that holds the connection.
        public var node: String
        /// The connection that tracked it.
        public var connection: UInt64

        /// An entry.
        public init(key: String, ref: String, meta: [UInt8], node: String, connection: UInt64) {
            self.key = key
            self.ref = ref
            self.meta = meta
            self.node = node
            self.connection = connection
        }
    }

    private var entries: [String: Entry] = [:]

    /// An empty table.
    public init() {}

    /// Number of metas present.
    public var count: Int { entries.count }

    /// Whether nobody is present.
    public var isEmpty: Bool { entries.isEmpty }

    /// The meta object for `payload` (a JSON object): `phx_ref` first, then the payload's members.
    public static func meta(ref: String, payload: [UInt8]) -> [UInt8] {
        var output = Array(#"{"phx_ref":"#.utf8)
        JSONStringWriter.append(ref.utf8, to: &output)
        let members = (try? JSONSlices.members(of: payload)) ?? []
        for member in members where member.key != "phx_ref" && member.key != "phx_ref_prev" {
            output.append(UInt8(ascii: ","))
            JSONStringWriter.append(member.key.utf8, to: &output)
            output.append(UInt8(ascii: ":"))
            output += member.value
        }
        output.append(UInt8(ascii: "}"))
        return output
    }

    /// Adds or replaces entries; returns those actually added.
    @discardableResult
    public mutating func insert(_ new: [Entry]) -> [Entry] {
        var added: [Entry] = []
        for entry in new where entries[entry.ref] != entry {
            entries[entry.ref] = entry
            added.append(entry)
        }
        return added
    }

    /// Removes the entries with `refs`; returns those removed.
    @discardableResult
    public mutating func remove(refs: [String]) -> [Entry] {
        refs.compactMap { entries.removeValue(forKey: $0) }
    }

    /// Removes every entry of a connection on `node`; returns them.
    public mutating func remove(node: String, connection: UInt64) -> [Entry] {
        let refs = entries.values.filter { $0.node == node && $0.connection == connection }.map(\.ref)
        return remove(refs: refs)
    }

    /// Removes every entry held by `node` (a kernel that died); returns them.
    public mutating func remove(node: String) -> [Entry] {
        remove(refs: entries.values.filter { $0.node == node }.map(\.ref))
    }

    /// Every entry held by `node`.
    public func entries(of node: String) -> [Entry] {
        entries.values.filter { $0.node == node }
    }

    /// `presence_state`'s payload: `{key: {"metas": [meta, ...]}, ...}`.
    public func stateJSON() -> [UInt8] {
        Self.grouped(Array(entries.values))
    }

    /// `presence_diff`'s payload: `{"joins": {...}, "leaves": {...}}`.
    public static func diffJSON(joins: [Entry], leaves: [Entry]) -> [UInt8] {
        Array(#"{"joins":"#.utf8) + grouped(joins) + Array(#","leaves":"#.utf8) + grouped(leaves) + [UInt8(ascii: "}")]
    }

    private static func grouped(_ list: [Entry]) -> [UInt8] {
        var byKey: [String: [Entry]] = [:]
        for entry in list { byKey[entry.key, default: []].append(entry) }
        var output: [UInt8] = [UInt8(ascii: "{")]
        for (index, key) in byKey.keys.sorted().enumerated() {
            if index > 0 { output.append(UInt8(ascii: ",")) }
            JSONStringWriter.append(key.utf8, to: &output)
            output += Array(#":{"metas":["#.utf8)
            for (metaIndex, entry) in (byKey[key] ?? []).sorted(by: { $0.ref < $1.ref }).enumerated() {
                if metaIndex > 0 { output.append(UInt8(ascii: ",")) }
                output += entry.meta
            }
            output += Array("]}".utf8)
        }
        output.append(UInt8(ascii: "}"))
        return output
    }
}
