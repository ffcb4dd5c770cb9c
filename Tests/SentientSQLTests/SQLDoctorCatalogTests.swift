import Foundation
import MeltyPostgres
import MeltyTestServices
import Testing

@testable import SentientSQL

/// The catalog queries, the EXPLAIN check and the RLS classification against a real Postgres.
@Suite(.serialized) struct SQLDoctorCatalogTests {
    static let schema = """
        CREATE SCHEMA auth;
        CREATE TABLE auth.users (id uuid PRIMARY KEY);
        CREATE SCHEMA reporting;
        CREATE TABLE reporting.monthly_sales (month date PRIMARY KEY, revenue numeric);
        CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, "fullName" text, price numeric(10, 2));
        CREATE TABLE countries (code text PRIMARY KEY, name text);
        CREATE TABLE todos (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner_id uuid NOT NULL REFERENCES auth.users (id), title text);
        CREATE TABLE orgs (id bigint PRIMARY KEY, name text);
        CREATE TABLE memberships (user_id uuid REFERENCES auth.users (id), org_id bigint REFERENCES orgs (id), PRIMARY KEY (user_id, org_id));
        CREATE TABLE projects (id bigint PRIMARY KEY, org_id bigint NOT NULL REFERENCES orgs (id), name text);
        INSERT INTO countries VALUES ('FR', 'France');
        """

    static func connection() async throws -> PostgresConnection {
        let connection = try await TestServices.connect(try TestServices.freshDatabase())
        try await connection.execute(schema)
        return connection
    }

    @Test func catalogAndScope() async throws {
        let connection = try await Self.connection()
        defer { connection.close() }
        let catalog = try await SQLCatalog.load(on: connection)
        #expect(catalog.searchPath.contains("public"))
        #expect(!catalog.onPath("reporting"))
        #expect(catalog.resolve(schema: nil, name: "products")?.type(of: "price") == "numeric(10,2)")
        #expect(catalog.resolve(schema: nil, name: "monthly_sales") == nil)
        #expect(catalog.resolve(schema: "reporting", name: "monthly_sales") != nil)
    }

    @Test func explainCheckPlansWithoutExecuting() async throws {
        let connection = try await Self.connection()
        defer { connection.close() }
        let check = SQLExplainCheck()
        #expect(try await check.failure(of: "DELETE FROM countries", on: connection) == nil)
        #expect(try await connection.query("SELECT count(*) FROM countries").scalar == "1")
        let failure = try await check.failure(of: "SELECT nmae FROM products", on: connection)
        #expect(failure?.sqlState == "42703")
        #expect(failure?.position == 8)
        let several = try await check.failure(of: "SELECT 1; DELETE FROM countries", on: connection)
        #expect(several?.sqlState == "42601")
        #expect(try await connection.query("SELECT count(*) FROM countries").scalar == "1")
    }

    @Test func diagnosesFromTheCatalog() async throws {
        let connection = try await Self.connection()
        defer { connection.close() }
        let doctor = SQLDoctor()
        let cases: [(String, String, String)] = [
            ("SELECT nmae FROM products", "undefined_column", "SELECT name FROM products"),
            ("SELECT fullname FROM products", "undefined_column", "SELECT \"fullName\" FROM products"),
            ("SELECT revenue FROM monthly_sales", "undefined_table", "SELECT revenue FROM reporting.monthly_sales"),
            ("SELECT lenght(name) FROM products", "undefined_function", "SELECT length(name) FROM products"),
            ("SELECT name, count(*) FROM products", "grouping_error", "SELECT name, count(*) FROM products GROUP BY name"),
            ("SELECT id FROM products WHERE id = '1,0'", "invalid_input", "SELECT id FROM products WHERE id = 10"),
        ]
        for (statement, category, fixed) in cases {
            let outcome = try await doctor.diagnose(statement: statement, reported: nil, on: connection)
            #expect(outcome.diagnosis.category == category, "\(statement)")
            #expect(outcome.fixes.first?.statement == fixed, "\(statement): \(outcome.fixes)")
        }
        let unique = SQLFailure(
            sqlState: "23505", message: "duplicate key value violates unique constraint \"countries_pkey\"", detail: "Key (code)=(FR) already exists.")
        let outcome = try await doctor.diagnose(statement: "INSERT INTO countries (code, name) VALUES ('FR', 'France')", reported: unique, on: connection)
        #expect(outcome.diagnosis.category == "unique_violation")
        #expect(outcome.fixes.map(\.statement).contains { $0.contains("ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name") })
        #expect(try await connection.query("SELECT count(*) FROM countries").scalar == "1")
    }

    @Test func rlsClassification() async throws {
        let connection = try await Self.connection()
        defer { connection.close() }
        let advisor = RLSAdvisor(schemas: ["public"])
        let proposals = advisor.proposals(try await advisor.snapshot(on: connection))
        let kinds = Dictionary(uniqueKeysWithValues: proposals.map { ($0.table, $0.kind) })
        #expect(kinds == ["todos": "owner", "memberships": "owner", "projects": "tenant", "orgs": "tenant_root", "products": "public_read", "countries": "public_read"])
        let todos = proposals.first { $0.table == "todos" }
        #expect(todos?.column == "owner_id")
        #expect(todos?.statements.first == "ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY;")
        #expect(todos?.explanation.contains("references auth.users(id)") == true)
        let projects = proposals.first { $0.table == "projects" }
        #expect(projects?.membership == "public.memberships")
        #expect(projects?.statements.contains { $0.contains("membership.org_id = projects.org_id AND membership.user_id = (SELECT auth.uid())") } == true)
    }
}
