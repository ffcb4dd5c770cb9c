import Foundation
import Testing

@testable import DatabasePlugin

/// The PostgREST query-string parser and the SQL it becomes, without a database: what
/// PostgREST accepts is parsed into the same tree, what it refuses is refused with a
/// message that names the part, and every value reaches the SQL as a bound parameter.
@Suite("REST query parser: select, filters, logic trees, order, and the SQL they become")
struct RestQueryParserTests {
    static let books = SchemaCache.Table(
        schema: "public", name: "books", isView: false,
        columns: ["id", "author_id", "title", "meta"].map { SchemaCache.Column(name: $0, type: $0 == "meta" ? "jsonb" : "text", nullable: true, hasDefault: false) },
        primaryKey: ["id"])

    static var cache: SchemaCache {
        var cache = SchemaCache()
        cache.tables["public.books"] = books
        return cache
    }

    @Test("select lists: columns, aliases, casts, JSON paths, embeds with hints and !inner")
    func selectList() throws {
        let query = try RestQuery.parse("select=id,label:title,meta->>isbn::int,authors!books_author_id_fkey!inner(name)")
        #expect(query.select.count == 4)
        guard case .field(let id, nil, nil) = query.select[0] else {
            Issue.record("id: \(query.select[0])")
            return
        }
        #expect(id.name == "id")
        guard case .field(let title, "label", nil) = query.select[1] else {
            Issue.record("label: \(query.select[1])")
            return
        }
        #expect(title.name == "title")
        guard case .field(let isbn, nil, "int") = query.select[2] else {
            Issue.record("cast: \(query.select[2])")
            return
        }
        #expect(isbn.name == "meta" && isbn.json.map(\.key) == ["isbn"] && isbn.json.map(\.arrow) == ["->>"])
        guard case .embed(let authors) = query.select[3] else {
            Issue.record("embed: \(query.select[3])")
            return
        }
        #expect(authors.name == "authors" && authors.hint == "books_author_id_fkey" && authors.inner)
    }

    @Test("an empty select is *; + in a query string is a space, as PostgREST decodes forms")
    func defaults() throws {
        let query = try RestQuery.parse("select=&title=eq.two+words")
        guard case .star = query.select.first else {
            Issue.record("\(query.select)")
            return
        }
        guard case .filter(let filter) = query.conditions.first else {
            Issue.record("\(query.conditions)")
            return
        }
        #expect(filter.value == "two words")
    }

    @Test(
        "filters: operators, not., any/all modifiers, full-text configurations",
        arguments: [
            ("id=eq.5", "eq", false, nil as String?, "5"),
            ("id=not.in.(1,2)", "in", true, nil, "(1,2)"),
            ("title=like(any).{a*,b*}", "like", false, "any", "{a*,b*}"),
            ("title=fts(english).cat", "fts", false, "english", "cat"),
            ("title=is.null", "is", false, nil, "null"),
        ])
    func filters(input: String, op: String, negated: Bool, modifier: String?, value: String) throws {
        let query = try RestQuery.parse(input)
        guard case .filter(let filter) = query.conditions.first else {
            Issue.record("\(query.conditions)")
            return
        }
        #expect(filter.op == op && filter.negated == negated && filter.modifier == modifier && filter.value == value)
    }

    @Test(
        "refusals name what is wrong",
        arguments: [
            ("id=equals.5", "unknown operator"),
            ("id=5", "expected operator.value"),
            ("limit=-1", "non-negative"),
            ("offset=ten", "non-negative"),
            ("title=fts(eng lish).x", "text search configuration"),
            ("id=cs(any).{1}", "not allowed"),
            ("or=a.eq.1", "parenthesised"),
            ("select=id::int;drop table books", "cast"),
            ("authors.select=name", "not supported"),
        ])
    func refusals(input: String, expected: String) {
        do {
            let query = try RestQuery.parse(input)
            Issue.record("accepted \(input): \(query.conditions)")
        } catch let error as RestParseError {
            let text = error.message + " " + (error.details ?? "")
            #expect(text.contains(expected), "\(input): \(text)")
        } catch {
            Issue.record("\(input): unexpected \(error)")
        }
    }

    @Test("logic trees nest, and embedded resources get their own filters, order and limits")
    func logicTreesAndEmbeds() throws {
        let query = try RestQuery.parse("or=(id.eq.1,and(title.like.a*,author_id.not.is.null))&authors.name=eq.Ann&authors.order=name.desc&authors.limit=2")
        guard case .group(false, false, let items) = query.conditions.first, items.count == 2,
            case .group(true, false, let inner) = items[1], inner.count == 2
        else {
            Issue.record("\(query.conditions)")
            return
        }
        guard case .filter(let notNull) = inner[1] else {
            Issue.record("\(inner)")
            return
        }
        #expect(notNull.negated && notNull.op == "is" && notNull.field.name == "author_id")
        #expect(query.embeddedConditions["authors"]?.count == 1)
        #expect(query.embeddedOrder["authors"]?.first?.descending == true)
        #expect(query.embeddedLimit["authors"] == 2)
    }

    @Test("values are bound parameters and identifiers are quoted: SQL keywords, quotes and NUL stay data")
    func sqlBindsValues() throws {
        let hostile = "x'); DROP TABLE books; --"
        let query = try RestQuery.parse("title=eq.\(hostile.addingPercentEncodingForQuery)&or=(id.gt.1,id.lt.-5)")
        var sql = RestSQL(cache: Self.cache)
        let condition = try sql.conditions(query.conditions, on: "t0")
        #expect(!condition.contains("DROP"))
        #expect(sql.parameters.contains(hostile))
        #expect(condition.contains("\"title\""))
        #expect(sql.parameters.count == 3)
    }

    @Test("order: direction and nulls first/last; a bad term is refused")
    func order() throws {
        let terms = try RestSelectParser.order("title.desc.nullslast,id")
        #expect(terms.count == 2 && terms[0].descending && terms[0].nulls != nil && !terms[1].descending)
        #expect(throws: RestParseError.self) { try RestSelectParser.order("title.sideways") }
    }
}

extension String {
    /// Percent-encodes everything but unreserved characters, as a client encodes a query value.
    fileprivate var addingPercentEncodingForQuery: String {
        var allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
        allowed.remove(UInt8(ascii: "+"))
        return utf8.map { allowed.contains($0) ? String(UnicodeScalar($0)) : String(format: "%%%02X", $0) }.joined()
    }
}
