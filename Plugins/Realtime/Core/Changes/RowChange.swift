import Foundation
import MeltyJSON

/// One committed row change of a table in the `supabase_realtime` publication, as the
/// change feed decoded it from `pgoutput`. It crosses kernels through Redis as JSON, so it
/// keeps Postgres's text values and converts them to JSON only when a `postgres_changes`
/// event is written (``dataJSON(visibleColumns:oldRecordKeyOnly:)``).
public struct RowChange: Codable, Sendable, Equatable {
    /// What happened to the row (Supabase's `type`).
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// A row was inserted.
        case insert = "INSERT"
        /// A row was updated.
        case update = "UPDATE"
        /// A row was deleted.
        case delete = "DELETE"
    }

    /// A column of the table: its name and its Postgres type name (`int4`, `text`, `_int4`).
    public struct Column: Codable, Sendable, Equatable, Hashable {
        /// The column's name.
        public var name: String
        /// The type's name as `pg_type.typname` spells it.
        public var type: String

        /// A column `name` of type `type`.
        public init(name: String, type: String) {
            self.name = name
            self.type = type
        }
    }

    /// One value of a row: `text` is Postgres's text form, nil for SQL NULL.
    public struct Field: Codable, Sendable, Equatable {
        /// The column's name.
        public var name: String
        /// The value in Postgres's text output format; nil is NULL.
        public var text: String?

        /// The value `text` of column `name`.
        public init(name: String, text: String?) {
            self.name = name
            self.text = text
        }
    }

    /// The table's schema.
    public var schema: String
    /// The table's name.
    public var table: String
    /// INSERT, UPDATE or DELETE.
    public var type: Kind
    /// When the transaction committed, ISO 8601 in UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
    public var commitTimestamp: String
    /// The table's columns in order.
    public var columns: [Column]
    /// The primary key's column names (the replica identity key when the table has none).
    public var primaryKey: [String]
    /// The new row (empty for DELETE). An unchanged TOASTed value the WAL did not carry is
    /// taken from ``oldRecord`` when that holds it, and left out otherwise.
    public var record: [Field]
    /// The old row as the WAL carries it (UPDATE and DELETE): the key columns, or every
    /// column with REPLICA IDENTITY FULL; empty for INSERT.
    public var oldRecord: [Field]
    /// The id (32-bit xid) of the transaction that made the change, as its WAL BEGIN says;
    /// 0 when unknown (a change passed from another kernel). Not sent to clients.
    public var transactionID: UInt32 = 0

    /// A change; see the properties.
    public init(
        schema: String, table: String, type: Kind, commitTimestamp: String, columns: [Column], primaryKey: [String], record: [Field], oldRecord: [Field]
    ) {
        self.schema = schema
        self.table = table
        self.type = type
        self.commitTimestamp = commitTimestamp
        self.columns = columns
        self.primaryKey = primaryKey
        self.record = record
        self.oldRecord = oldRecord
    }

    enum CodingKeys: String, CodingKey {
        case schema, table, type, columns, record
        case commitTimestamp = "commit_timestamp"
        case primaryKey = "primary_key"
        case oldRecord = "old_record"
    }

    /// The type name of column `name`, if the table has it.
    public func columnType(_ name: String) -> String? {
        columns.first { $0.name == name }?.type
    }

    /// The row a filter or a visibility check looks at: the new row, or the old one for DELETE.
    public var currentRow: [Field] { type == .delete ? oldRecord : record }

    /// `date` as Supabase writes `commit_timestamp`: ISO 8601, UTC, milliseconds, `Z`.
    public static func timestamp(_ date: Date) -> String {
        var milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let millis = Int(((milliseconds % 1000) + 1000) % 1000)
        milliseconds -= Int64(millis)
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }

    /// The `data` object of a `postgres_changes` event: `{schema, table, commit_timestamp,
    /// type, columns, record, old_record, errors}`, restricted to `visibleColumns` when given
    /// (a subscriber never sees a column its role may not select). With `oldRecordKeyOnly`
    /// (a DELETE on a table with row-level security) `old_record` keeps only the primary key.
    public func dataJSON(visibleColumns: Set<String>? = nil, oldRecordKeyOnly: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + 32 * columns.count * 3)
        func key(_ name: String) {
            JSONStringWriter.append(name.utf8, to: &out)
            out.append(UInt8(ascii: ":"))
        }
        func visible(_ name: String) -> Bool { visibleColumns?.contains(name) ?? true }
        let types = Dictionary(columns.map { ($0.name, $0.type) }, uniquingKeysWith: { first, _ in first })
        func row(_ fields: [Field], keyOnly: Bool) {
            out.append(UInt8(ascii: "{"))
            var first = true
            for field in fields where visible(field.name) && (!keyOnly || primaryKey.contains(field.name)) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                key(field.name)
                Self.appendValue(field.text, type: types[field.name] ?? "text", to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "{"))
        key("schema")
        JSONStringWriter.append(schema.utf8, to: &out)
        out.append(UInt8(ascii: ","))
        key("table")
        JSONStringWriter.append(table.utf8, to: &out)
        out.append(UInt8(ascii: ","))
        key("commit_timestamp")
        JSONStringWriter.append(commitTimestamp.utf8, to: &out)
        out.append(UInt8(ascii: ","))
        key("type")
        JSONStringWriter.append(type.rawValue.utf8, to: &out)
        out.append(UInt8(ascii: ","))
        key("columns")
        out.append(UInt8(ascii: "["))
        var first = true
        for column in columns where visible(column.name) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(UInt8(ascii: "{"))
            key("name")
            JSONStringWriter.append(column.name.utf8, to: &out)
            out.append(UInt8(ascii: ","))
            key("type")
            JSONStringWriter.append(column.type.utf8, to: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        out.append(UInt8(ascii: ","))
        key("record")
        row(record, keyOnly: false)
        out.append(UInt8(ascii: ","))
        key("old_record")
        row(oldRecord, keyOnly: oldRecordKeyOnly && type == .delete)
        out.append(UInt8(ascii: ","))
        key("errors")
        out += Array("null".utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Types whose text form is written as a JSON number (when it is one: `NaN` and the
    /// infinities become strings, as `to_jsonb` makes them).
    static let numericTypes: Set<String> = ["int2", "int4", "int8", "float4", "float8", "numeric", "oid"]

    /// Appends Postgres's text `text` of a value of type `type` as JSON, as Supabase converts
    /// it: numbers written exactly from their text, booleans, embedded json/jsonb, null,
    /// everything else a string.
    static func appendValue(_ text: String?, type: String, to out: inout [UInt8]) {
        guard let text else {
            out += Array("null".utf8)
            return
        }
        switch type {
        case _ where numericTypes.contains(type) && DecimalText.isJSONNumber(text):
            out += Array(text.utf8)
        case "bool":
            out += Array((text == "t" || text == "true" ? "true" : "false").utf8)
        case "json", "jsonb":
            // Postgres validated it on input; it is embedded as it is.
            out += Array(text.utf8)
        default:
            JSONStringWriter.append(text.utf8, to: &out)
        }
    }
}
