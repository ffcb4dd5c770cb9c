import Foundation
import MeltyPostgres

/// Turns `pgoutput` change messages into ``RowChange``s: keeps each table's shape from its
/// `Relation` message, with type names and the primary key looked up in the catalog (once
/// per shape; a `Relation` message after DDL replaces it).
struct ChangeDecoder {
    /// A table's shape as the changes need it.
    struct Shape {
        var schema: String
        var table: String
        var columns: [RowChange.Column]
        var primaryKey: [String]
        /// REPLICA IDENTITY FULL: the old tuple holds the whole row.
        var identityFull: Bool
        /// The replica identity's key columns (what a key-only old tuple holds).
        var identityKey: Set<String>
    }

    private(set) var shapes: [UInt32: Shape] = [:]
    /// Type names by OID, filled from `pg_type` as relations name new ones.
    private var typeNames: [UInt32: String] = [:]

    /// Records `relation`'s shape, asking `connection` (to the same database) for the names
    /// of types not seen yet and for the table's primary key.
    mutating func learn(_ relation: PgOutputRelation, catalog connection: PostgresConnection) async throws {
        let unknown = Set(relation.columns.map(\.typeOID)).subtracting(typeNames.keys)
        if !unknown.isEmpty {
            let list = "{" + unknown.map(String.init).joined(separator: ",") + "}"
            let rows = try await connection.query("SELECT oid::text, typname::text FROM pg_type WHERE oid = ANY($1::oid[])", [list])
            for row in rows.rows {
                if let oid = row[0].flatMap({ UInt32($0) }), let name = row[1] { typeNames[oid] = name }
            }
        }
        let keyRows = try await connection.query(
            """
            SELECT a.attname::text FROM pg_index i
            JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.n
            """, [String(relation.id)])
        let names = Set(relation.columns.map(\.name))
        var primaryKey = keyRows.rows.compactMap { $0[0] }.filter(names.contains)
        if primaryKey.isEmpty { primaryKey = relation.columns.filter(\.isKey).map(\.name) }
        shapes[relation.id] = Shape(
            schema: relation.schema, table: relation.name,
            columns: relation.columns.map { RowChange.Column(name: $0.name, type: typeNames[$0.typeOID] ?? "unknown") },
            primaryKey: primaryKey, identityFull: relation.replicaIdentity == "f",
            identityKey: Set(relation.columns.filter(\.isKey).map(\.name)))
    }

    /// The change `message` describes (nil for messages that are not row changes, or for a
    /// table no `Relation` message described).
    func change(_ message: PgOutputMessage, commitTimestamp: String) -> RowChange? {
        let relation: UInt32
        let kind: RowChange.Kind
        var new: [PgOutputValue] = []
        var old: [PgOutputValue] = []
        switch message {
        case .insert(let id, let values):
            (relation, kind, new) = (id, .insert, values)
        case .update(let id, let oldValues, let values):
            (relation, kind, new, old) = (id, .update, values, oldValues ?? [])
        case .delete(let id, let oldValues):
            (relation, kind, old) = (id, .delete, oldValues)
        default:
            return nil
        }
        guard let shape = shapes[relation] else { return nil }
        func fields(_ values: [PgOutputValue], fallback: [PgOutputValue]) -> [RowChange.Field] {
            var fields: [RowChange.Field] = []
            fields.reserveCapacity(values.count)
            for (index, column) in shape.columns.enumerated() where index < values.count {
                switch values[index] {
                case .text(let text): fields.append(.init(name: column.name, text: text))
                case .null:
                    // A key-only old tuple sends NULL for the columns outside the key.
                    fields.append(.init(name: column.name, text: nil))
                case .unchangedToast:
                    // Unchanged and not in the WAL: the old row's value when it came, else left out.
                    if index < fallback.count, case .text(let text) = fallback[index] { fields.append(.init(name: column.name, text: text)) }
                }
            }
            return fields
        }
        var oldFields = fields(old, fallback: [])
        if !shape.identityFull {
            // A key-only old tuple (the default replica identity) has NULL outside the key.
            oldFields = oldFields.filter { shape.identityKey.contains($0.name) }
        }
        return RowChange(
            schema: shape.schema, table: shape.table, type: kind, commitTimestamp: commitTimestamp, columns: shape.columns, primaryKey: shape.primaryKey,
            record: fields(new, fallback: old), oldRecord: oldFields)
    }

}
