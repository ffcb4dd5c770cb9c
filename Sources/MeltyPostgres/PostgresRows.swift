import CLibPQ

/// Rows of a completed statement in libpq's text format, with their column types.
public struct PostgresRows: Sendable {
    /// Column names in order.
    public var columns: [String]
    /// Type OIDs aligned with `columns` (`25` text, `23` int4, `3802` jsonb …).
    public var types: [UInt32]
    /// Rows, each aligned with `columns`; `nil` is SQL NULL.
    public var rows: [[String?]]
    /// The command tag (`INSERT 0 1`).
    public var commandTag: String

    /// Rows with these columns.
    public init(columns: [String] = [], types: [UInt32] = [], rows: [[String?]] = [], commandTag: String = "") {
        self.columns = columns
        self.types = types
        self.rows = rows
        self.commandTag = commandTag
    }

    /// The first column of the first row.
    public var scalar: String? { rows.first?.first ?? nil }

    /// Value of `column` in row `index`, or `nil`.
    public func value(_ column: String, row index: Int = 0) -> String? {
        guard index < rows.count, let position = columns.firstIndex(of: column) else { return nil }
        return rows[index][position]
    }

    /// Reads a result; throws ``PostgresError`` when it is a failure.
    static func read(_ result: OpaquePointer) throws -> PostgresRows {
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
            throw PostgresError.from(result: result)
        }
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        var columns: [String] = []
        var types: [UInt32] = []
        columns.reserveCapacity(columnCount)
        types.reserveCapacity(columnCount)
        for column in 0..<Int32(columnCount) {
            columns.append(String(cString: PQfname(result, column)))
            types.append(UInt32(PQftype(result, column)))
        }
        var rows: [[String?]] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var values: [String?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) == 1 {
                    values.append(nil)
                } else if let pointer = PQgetvalue(result, row, column) {
                    let length = Int(PQgetlength(result, row, column))
                    values.append(String(decoding: UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer), count: length), as: UTF8.self))
                } else {
                    values.append("")
                }
            }
            rows.append(values)
        }
        return PostgresRows(columns: columns, types: types, rows: rows, commandTag: String(cString: PQcmdStatus(result)))
    }
}
