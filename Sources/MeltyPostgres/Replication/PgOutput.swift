import Foundation

/// A position in the write-ahead log (`16/B374D848`).
public struct LSN: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// The 64-bit position.
    public var value: UInt64

    /// The position `value`.
    public init(_ value: UInt64) { self.value = value }

    /// Parses Postgres's `X/Y` text form; nil when it is not one.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ (1...8).contains($0.count) }),
            let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16)
        else { return nil }
        value = high << 32 | low
    }

    /// The start of the log (`0/0`): "from wherever the slot stands".
    public static let zero = LSN(0)

    /// `X/Y` as Postgres writes it.
    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    /// Earlier in the WAL.
    public static func < (lhs: LSN, rhs: LSN) -> Bool { lhs.value < rhs.value }
}

/// One message of the `pgoutput` logical decoding plugin (protocol version 1), as the
/// Realtime plugin and anything else that streams changes receives it.
public enum PgOutputMessage: Sendable {
    /// A transaction starts; `finalLSN` is its commit's position.
    case begin(finalLSN: LSN, commitTime: Date, xid: UInt32)
    /// A transaction committed; acknowledge `endLSN` once its changes are processed.
    case commit(commitLSN: LSN, endLSN: LSN, commitTime: Date)
    /// The shape of a table, sent before its first change in a stream (and after DDL).
    case relation(PgOutputRelation)
    /// A row was inserted.
    case insert(relation: UInt32, new: [PgOutputValue])
    /// A row was updated; `old` is the old key or row when the replica identity sends it.
    case update(relation: UInt32, old: [PgOutputValue]?, new: [PgOutputValue])
    /// A row was deleted; `old` holds its key (or whole row with REPLICA IDENTITY FULL).
    case delete(relation: UInt32, old: [PgOutputValue])
    /// Tables were truncated.
    case truncate(relations: [UInt32], cascade: Bool, restartIdentity: Bool)
    /// A type's name (for values of non-built-in types).
    case type(oid: UInt32, schema: String, name: String)
    /// The origin of the transaction (replicated from elsewhere).
    case origin(lsn: LSN, name: String)
    /// A message `pg_logical_emit_message` wrote (with the `messages` option).
    case message(transactional: Bool, lsn: LSN, prefix: String, content: [UInt8])
}

/// A table as `pgoutput` describes it.
public struct PgOutputRelation: Sendable {
    /// The table's OID, which later change messages refer to.
    public var id: UInt32
    /// The table's schema.
    public var schema: String
    /// The table's name.
    public var name: String
    /// Replica identity: `d` default (primary key), `n` nothing, `f` full, `i` index.
    public var replicaIdentity: Character
    /// Columns in order.
    public var columns: [Column]

    /// One column.
    public struct Column: Sendable {
        /// The column's name.
        public var name: String
        /// Its type's OID.
        public var typeOID: UInt32
        /// Its type modifier (`atttypmod`).
        public var typeModifier: Int32
        /// Whether the column is part of the replica identity key.
        public var isKey: Bool
    }
}

/// One column value of a changed row.
public enum PgOutputValue: Sendable, Equatable {
    case null
    /// A TOASTed value that did not change (the old value still holds).
    case unchangedToast
    /// The value in Postgres's text format.
    case text(String)
}

/// Why a `pgoutput` message could not be read.
public struct PgOutputDecodingError: Error, CustomStringConvertible, Sendable {
    /// What was wrong with the message.
    public var description: String
}

/// Reads big-endian fields of a replication message.
struct ReplicationReader {
    private let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func byte() throws -> UInt8 {
        guard remaining >= 1 else { throw PgOutputDecodingError(description: "message ends early") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw PgOutputDecodingError(description: "message ends early") }
        var value: T = 0
        for index in 0..<size { value = value << 8 | T(truncatingIfNeeded: bytes[offset + index]) }
        offset += size
        return value
    }

    /// A NUL-terminated string.
    mutating func string() throws -> String {
        guard let end = bytes[offset...].firstIndex(of: 0) else { throw PgOutputDecodingError(description: "string without its terminator") }
        defer { offset = end + 1 }
        return String(decoding: bytes[offset..<end], as: UTF8.self)
    }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else { throw PgOutputDecodingError(description: "message ends early") }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }
}

extension PgOutputMessage {
    /// Microseconds since 2000-01-01, Postgres's epoch, as a date.
    static func date(_ microseconds: Int64) -> Date {
        Date(timeIntervalSince1970: 946_684_800 + Double(microseconds) / 1_000_000)
    }

    /// Decodes one `pgoutput` message (the payload of an XLogData message).
    public static func decode(_ bytes: [UInt8]) throws -> PgOutputMessage {
        var reader = ReplicationReader(bytes)
        let kind = try reader.byte()
        switch kind {
        case UInt8(ascii: "B"):
            let final = LSN(try reader.integer(UInt64.self))
            let time = date(try reader.integer(Int64.self))
            return .begin(finalLSN: final, commitTime: time, xid: try reader.integer(UInt32.self))
        case UInt8(ascii: "C"):
            _ = try reader.byte()
            let commit = LSN(try reader.integer(UInt64.self))
            let end = LSN(try reader.integer(UInt64.self))
            return .commit(commitLSN: commit, endLSN: end, commitTime: date(try reader.integer(Int64.self)))
        case UInt8(ascii: "O"):
            let lsn = LSN(try reader.integer(UInt64.self))
            return .origin(lsn: lsn, name: try reader.string())
        case UInt8(ascii: "R"):
            let id = try reader.integer(UInt32.self)
            let schema = try reader.string()
            let name = try reader.string()
            let identity = Character(UnicodeScalar(try reader.byte()))
            let count = Int(try reader.integer(Int16.self))
            guard count >= 0 else { throw PgOutputDecodingError(description: "negative column count") }
            var columns: [PgOutputRelation.Column] = []
            for _ in 0..<count {
                let flags = try reader.byte()
                let column = try reader.string()
                let type = try reader.integer(UInt32.self)
                columns.append(.init(name: column, typeOID: type, typeModifier: try reader.integer(Int32.self), isKey: flags & 1 == 1))
            }
            return .relation(PgOutputRelation(id: id, schema: schema, name: name, replicaIdentity: identity, columns: columns))
        case UInt8(ascii: "Y"):
            let oid = try reader.integer(UInt32.self)
            let schema = try reader.string()
            return .type(oid: oid, schema: schema, name: try reader.string())
        case UInt8(ascii: "I"):
            let relation = try reader.integer(UInt32.self)
            guard try reader.byte() == UInt8(ascii: "N") else { throw PgOutputDecodingError(description: "insert without a new tuple") }
            return .insert(relation: relation, new: try tuple(&reader))
        case UInt8(ascii: "U"):
            let relation = try reader.integer(UInt32.self)
            var marker = try reader.byte()
            var old: [PgOutputValue]?
            if marker == UInt8(ascii: "K") || marker == UInt8(ascii: "O") {
                old = try tuple(&reader)
                marker = try reader.byte()
            }
            guard marker == UInt8(ascii: "N") else { throw PgOutputDecodingError(description: "update without a new tuple") }
            return .update(relation: relation, old: old, new: try tuple(&reader))
        case UInt8(ascii: "D"):
            let relation = try reader.integer(UInt32.self)
            let marker = try reader.byte()
            guard marker == UInt8(ascii: "K") || marker == UInt8(ascii: "O") else { throw PgOutputDecodingError(description: "delete without an old tuple") }
            return .delete(relation: relation, old: try tuple(&reader))
        case UInt8(ascii: "T"):
            let count = Int(try reader.integer(Int32.self))
            let options = try reader.byte()
            guard count >= 0, count <= reader.remaining / 4 else { throw PgOutputDecodingError(description: "bad truncate relation count") }
            var relations: [UInt32] = []
            for _ in 0..<count { relations.append(try reader.integer(UInt32.self)) }
            return .truncate(relations: relations, cascade: options & 1 == 1, restartIdentity: options & 2 == 2)
        case UInt8(ascii: "M"):
            let flags = try reader.byte()
            let lsn = LSN(try reader.integer(UInt64.self))
            let prefix = try reader.string()
            let length = Int(try reader.integer(Int32.self))
            return .message(transactional: flags & 1 == 1, lsn: lsn, prefix: prefix, content: Array(try reader.take(length)))
        default:
            throw PgOutputDecodingError(description: "unknown pgoutput message '\(Character(UnicodeScalar(kind)))'")
        }
    }

    private static func tuple(_ reader: inout ReplicationReader) throws -> [PgOutputValue] {
        let count = Int(try reader.integer(Int16.self))
        guard count >= 0 else { throw PgOutputDecodingError(description: "negative column count") }
        var values: [PgOutputValue] = []
        values.reserveCapacity(count)
        for _ in 0..<count {
            switch try reader.byte() {
            case UInt8(ascii: "n"): values.append(.null)
            case UInt8(ascii: "u"): values.append(.unchangedToast)
            case UInt8(ascii: "t"), UInt8(ascii: "b"):
                let length = Int(try reader.integer(Int32.self))
                values.append(.text(String(decoding: try reader.take(length), as: UTF8.self)))
            default: throw PgOutputDecodingError(description: "unknown tuple value kind")
            }
        }
        return values
    }
}
