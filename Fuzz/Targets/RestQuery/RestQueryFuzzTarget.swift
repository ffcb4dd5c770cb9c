import Foundation
import MeltyPostgres
import PortalDatabaseCore

@testable import DatabasePlugin
@testable import MeltyPluginSDK

/// libFuzzer target for the Database plugin's PostgREST parsing: the query string
/// (`select`, filters, `and`/`or`/`not` trees, `order`, `limit`/`offset`, `on_conflict`,
/// `columns`, embedded filters), the `Range` and `Prefer` headers, and the SQL the parsed
/// query becomes against a small fixed schema.
///
/// Input (see ``FuzzInput``): the raw query string on the first line, then headers such as
/// `range: 0-9`, `prefer: return=representation,count=exact`, and the pseudo-header
/// `method: HEAD` (default GET).
///
/// Beyond traps, it checks what the parser promises the SQL builder: an accepted cast is a
/// type name, and SQL text outside quoted identifiers, literals and parameters is plain ASCII
/// without statement separators or comments.
enum RestQueryFuzzTarget {
    static let schema: SchemaCache = {
        func column(_ name: String, _ type: String) -> SchemaCache.Column {
            SchemaCache.Column(name: name, type: type, nullable: true, hasDefault: false)
        }
        var cache = SchemaCache()
        let tables = [
            SchemaCache.Table(schema: "public", name: "authors", isView: false, columns: [column("id", "integer"), column("name", "text")], primaryKey: ["id"]),
            SchemaCache.Table(
                schema: "public", name: "books", isView: false,
                columns: [column("id", "integer"), column("author_id", "integer"), column("title", "text"), column("meta", "jsonb"), column("tags", "text[]")],
                primaryKey: ["id"]),
            SchemaCache.Table(schema: "public", name: "tags", isView: false, columns: [column("id", "integer"), column("label", "text")], primaryKey: ["id"]),
            SchemaCache.Table(
                schema: "public", name: "book_tags", isView: false, columns: [column("book_id", "integer"), column("tag_id", "integer")],
                primaryKey: ["book_id", "tag_id"]),
        ]
        for table in tables { cache.tables[table.schema + "." + table.name] = table }
        cache.foreignKeys = [
            SchemaCache.ForeignKey(
                name: "books_author_id_fkey", schema: "public", table: "books", columns: ["author_id"],
                foreignSchema: "public", foreignTable: "authors", foreignColumns: ["id"]),
            SchemaCache.ForeignKey(
                name: "book_tags_book_id_fkey", schema: "public", table: "book_tags", columns: ["book_id"],
                foreignSchema: "public", foreignTable: "books", foreignColumns: ["id"]),
            SchemaCache.ForeignKey(
                name: "book_tags_tag_id_fkey", schema: "public", table: "book_tags", columns: ["tag_id"],
                foreignSchema: "public", foreignTable: "tags", foreignColumns: ["id"]),
        ]
        return cache
    }()

    /// The loop the handlers' pools would drive (they never connect).
    static let loop = PostgresEventLoop(name: "fuzz-rest-query")

    /// Handlers whose pool never connects: only their pure request parsing runs.
    static let handlers = [
        RestHandler(pool: PostgresPool(conninfo: "", size: 1, maxWaiting: 0, loop: loop), schemas: ["public"], maxRows: nil),
        RestHandler(pool: PostgresPool(conninfo: "", size: 1, maxWaiting: 0, loop: loop), schemas: ["public"], maxRows: 1000),
    ]

    static func run(_ input: FuzzInput) {
        let method = input.header("method") ?? "GET"
        let request = PluginRequest(
            method: method, path: "/books", query: input.subject,
            headers: input.headers.filter { $0.name != "method" }, body: [], portal: "demo", requestID: "fuzz",
            remoteAddress: "127.0.0.1", clientCertificateSubject: "")

        _ = Preferences(request.header("prefer"))
        _ = try? RestQuery.parse(input.subject, treatAsArguments: ["id", "title"])
        guard let query = try? RestQuery.parse(input.subject) else { return }

        for handler in handlers {
            if let window = try? handler.window(query, request) {
                if window.offset < 0 || (window.limit ?? 0) < 0 {
                    FuzzInput.violated("window is non-negative", "offset \(window.offset), limit \(String(describing: window.limit))")
                }
            }
        }

        checkCasts(query.select)
        var sql = RestSQL(cache: schema)
        guard let books = schema.table("public", "books") else { return }
        var inner: [String] = []
        var statement = ""
        if let list = try? sql.selectList(query.select, table: books, alias: "t0", embeds: query, innerJoins: &inner) { statement += list }
        if let conditions = try? sql.conditions(query.conditions, on: "t0") { statement += " WHERE " + conditions }
        statement += sql.orderBy(query.order, on: "t0")
        FuzzInput.trace("sql: " + statement)
        checkSQL(statement)
    }

    /// A cast reaches the SQL text as written, so it must be a type name and nothing else:
    /// an identifier (optionally schema-qualified) or one of Postgres's multi-word type names,
    /// optionally with a precision and array brackets.
    static func checkCasts(_ items: [RestSelectItem]) {
        for item in items {
            switch item {
            case .star: break
            case .embed(let embed): checkCasts(embed.items)
            case .field(_, _, let cast?):
                if cast.wholeMatch(of: typeName) == nil { FuzzInput.violated("a cast is one type name", "\"\(cast)\"") }
            case .field: break
            }
        }
    }

    // Regex is not Sendable; this one is built once, never mutated, and the fuzzer runs one input at a time.
    nonisolated(unsafe) static let typeName = try! Regex(
        #"(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?|double precision|character varying|bit varying|(?:time|timestamp)(?:\(\d+\))? with(?:out)? time zone)(?:\(\d+(?:,\s?\d+)?\))?(?:\[\])*"#
    )

    /// Outside `"identifiers"`, `'literals'` (quotes doubled inside both) and `$n` parameters,
    /// the SQL must be printable ASCII without `;`, `--` or `/*`.
    static func checkSQL(_ sql: String) {
        var quote: UInt8?
        var previous: UInt8 = 0
        var bytes = Array(sql.utf8)[...]
        while let byte = bytes.popFirst() {
            if let open = quote {
                if byte == open {
                    if bytes.first == open { bytes.removeFirst() } else { quote = nil }
                }
                continue
            }
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                quote = byte
                continue
            }
            let comment = (previous == UInt8(ascii: "-") && byte == UInt8(ascii: "-")) || (previous == UInt8(ascii: "/") && byte == UInt8(ascii: "*"))
            if byte < 0x20 || byte > 0x7E || byte == UInt8(ascii: ";") || comment {
                FuzzInput.violated("SQL outside quotes is plain ASCII without ; -- /*", sql)
            }
            previous = byte
        }
        if quote != nil { FuzzInput.violated("quotes in SQL are balanced", sql) }
    }
}

/// libFuzzer's entry point.
@_cdecl("LLVMFuzzerTestOneInput")
public func restQueryFuzzTest(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    RestQueryFuzzTarget.run(FuzzInput(data, count))
    return 0
}
