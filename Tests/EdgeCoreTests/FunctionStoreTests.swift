import EdgeCore
import Foundation
import MeltyJSON
import MeltyPostgres
import MeltyTestServices
import Testing

/// ``FunctionStore`` on a real Postgres (a fresh system database per test).
@Suite("Edge function store on Postgres", .timeLimit(.minutes(3)))
struct FunctionStoreTests {
    static func store() throws -> (FunctionStore, String) {
        let conninfo = try TestServices.freshDatabase()
        return (FunctionStore(conninfo: conninfo, connections: 8, loop: TestServices.loop), conninfo)
    }

    static func bundle(_ text: String, verifyJWT: Bool = true) throws -> FunctionBundle {
        try FunctionBundle(files: ["index.ts": Array(text.utf8), "lib/x.ts": Array("export const x = 1;\n".utf8)], manifest: try FunctionManifest(verifyJWT: verifyJWT))
    }

    @Test("Deploy twice, list, read back, roll back, delete; changes are announced")
    func lifecycle() async throws {
        let (store, conninfo) = try Self.store()
        defer { store.close() }
        let hello = try FunctionName("hello")
        let listener = try await TestServices.connect(conninfo)
        defer { listener.close() }
        try await store.migrate()
        _ = try await listener.query("LISTEN edge_functions")

        let first = try await store.deploy(portal: "acme", name: hello, bundle: try Self.bundle("export default 1;\n"), createdBy: "admin@acme")
        let second = try await store.deploy(portal: "acme", name: hello, bundle: try Self.bundle("export default 2;\n", verifyJWT: false), createdBy: "admin@acme")
        #expect(first.version == 1 && second.version == 2 && second.active)
        #expect(first.sha256.count == 64 && first.sha256 != second.sha256)
        var notifications: [String] = []
        while notifications.count < 2 { notifications += try await listener.nextNotifications().map(\.payload) }
        #expect(notifications == ["acme/hello", "acme/hello"])

        let record = try #require(try await store.function(portal: "acme", name: hello))
        #expect(record.activeVersion == 2 && !record.manifest.verifyJWT && record.manifest.entrypoint == "index.ts" && record.sha256 == second.sha256)
        #expect(try await store.functions(portal: "acme").map(\.name.value) == ["hello"])
        let versions = try await store.versions(portal: "acme", name: hello)
        #expect(versions.map(\.version) == [2, 1] && versions.map(\.active) == [true, false] && versions.first?.createdBy == "admin@acme")
        let active = try await store.bundle(portal: "acme", name: hello)
        #expect(active.version == 2 && active.bundle.files["index.ts"] == Array("export default 2;\n".utf8))
        let old = try await store.bundle(portal: "acme", name: hello, version: 1)
        #expect(old.bundle == (try Self.bundle("export default 1;\n")))
        await #expect(throws: EdgeStoreError.versionNotFound(portal: "acme", name: "hello", version: 9)) { try await store.bundle(portal: "acme", name: hello, version: 9) }

        let rolledBack = try await store.rollback(portal: "acme", name: hello)
        #expect(rolledBack.activeVersion == 1 && rolledBack.manifest.verifyJWT)
        await #expect(throws: EdgeStoreError.noPreviousVersion(portal: "acme", name: "hello")) { try await store.rollback(portal: "acme", name: hello) }
        #expect(try await store.rollback(portal: "acme", name: hello, to: 2).activeVersion == 2)
        await #expect(throws: EdgeStoreError.versionNotFound(portal: "acme", name: "hello", version: 3)) { try await store.rollback(portal: "acme", name: hello, to: 3) }
        let third = try await store.deploy(portal: "acme", name: hello, bundle: try Self.bundle("export default 3;\n"), createdBy: "ci")
        #expect(third.version == 3)

        try await store.appendLogs([FunctionLogLine(portal: "acme", name: hello, version: 3, requestID: "r1", level: "info", message: "hi", at: Date())])
        try await store.delete(portal: "acme", name: hello)
        #expect(try await store.function(portal: "acme", name: hello) == nil)
        #expect(try await store.functions(portal: "acme").isEmpty)
        await #expect(throws: EdgeStoreError.functionNotFound(portal: "acme", name: "hello")) { try await store.versions(portal: "acme", name: hello) }
        await #expect(throws: EdgeStoreError.functionNotFound(portal: "acme", name: "hello")) { try await store.delete(portal: "acme", name: hello) }
        #expect(try await store.logs(portal: "acme", name: hello).isEmpty)
        let remaining = try await listener.query("SELECT (SELECT count(*) FROM edge.versions) + (SELECT count(*) FROM edge.logs) AS n").value("n")
        #expect(remaining == "0")
        // A new deploy after delete starts at version 1 again.
        #expect(try await store.deploy(portal: "acme", name: hello, bundle: try Self.bundle("export default 4;\n"), createdBy: "ci").version == 1)
    }

    @Test("Two portals with the same function name do not see each other")
    func isolation() async throws {
        let (store, _) = try Self.store()
        defer { store.close() }
        let name = try FunctionName("shared")
        _ = try await store.deploy(portal: "alpha", name: name, bundle: try Self.bundle("export default 'a';\n"), createdBy: "a")
        _ = try await store.deploy(portal: "alpha", name: name, bundle: try Self.bundle("export default 'a2';\n"), createdBy: "a")
        _ = try await store.deploy(portal: "beta", name: name, bundle: try Self.bundle("export default 'b';\n"), createdBy: "b")
        #expect(try await store.function(portal: "alpha", name: name)?.activeVersion == 2)
        #expect(try await store.function(portal: "beta", name: name)?.activeVersion == 1)
        #expect(try await store.bundle(portal: "beta", name: name).bundle.files["index.ts"] == Array("export default 'b';\n".utf8))
        try await store.appendLogs([FunctionLogLine(portal: "alpha", name: name, version: 2, requestID: "", level: "log", message: "alpha only", at: Date())])
        #expect(try await store.logs(portal: "beta", name: name).isEmpty)
        try await store.delete(portal: "beta", name: name)
        #expect(try await store.function(portal: "alpha", name: name)?.activeVersion == 2)
        #expect(try await store.logs(portal: "alpha", name: name).count == 1)
        #expect(try await store.functions(portal: "gamma").isEmpty)
        // Hostile portal ids are refused before Postgres.
        for portal in ["", "a/b", "a\u{0}b", String(repeating: "p", count: 200)] {
            await #expect(throws: EdgeStoreError.self) { try await store.functions(portal: portal) }
        }
        #expect(try await store.functions(portal: "'; DROP SCHEMA edge CASCADE; --").isEmpty)
        await #expect(throws: EdgeStoreError.self) {
            try await store.deploy(portal: "alpha", name: name, bundle: try Self.bundle("export {};"), createdBy: "x\u{0}y")
        }
    }

    @Test("20 concurrent deploys of one name get 20 distinct versions")
    func concurrentDeploys() async throws {
        let (store, _) = try Self.store()
        defer { store.close() }
        let name = try FunctionName("busy")
        let versions = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                group.addTask { try await store.deploy(portal: "acme", name: name, bundle: try Self.bundle("export default \(index);\n"), createdBy: "t\(index)").version }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(versions.sorted() == Array(1...20))
        #expect(try await store.function(portal: "acme", name: name)?.activeVersion == 20)
        #expect(try await store.versions(portal: "acme", name: name).count == 20)
    }

    @Test("Logs: batch append, paging by id, long and NUL messages, purge by age and count")
    func logs() async throws {
        let (store, _) = try Self.store()
        defer { store.close() }
        let name = try FunctionName("logger")
        _ = try await store.deploy(portal: "acme", name: name, bundle: try Self.bundle("export {};\n"), createdBy: "t")
        let old = Date(timeIntervalSinceNow: -3 * 86400)
        var lines = (0..<1500).map { FunctionLogLine(portal: "acme", name: name, version: 1, requestID: "r\($0)", level: "info", message: "line \($0)", at: old) }
        lines.append(FunctionLogLine(portal: "acme", name: name, version: 1, requestID: "long", level: "error", message: String(repeating: "é", count: 5000), at: Date()))
        lines.append(FunctionLogLine(portal: "acme", name: name, version: 1, requestID: "nul", level: "warn", message: "a\u{0}b", at: Date()))
        try await store.appendLogs(lines)

        let page = try await store.logs(portal: "acme", name: name, limit: 1000)
        #expect(page.count == 1000 && page.first?.message == "line 0" && page.last?.message == "line 999")
        #expect(zip(page, page.dropFirst()).allSatisfy { $0.id < $1.id })
        let rest = try await store.logs(portal: "acme", name: name, after: page.last?.id ?? 0, limit: 1000)
        #expect(rest.count == 502)
        let long = try #require(rest.first { $0.requestID == "long" })
        #expect(long.message.utf8.count == 8192 && long.level == "error")
        #expect(rest.last?.message == "a\u{FFFD}b")
        #expect(abs((page.first?.at.timeIntervalSince1970 ?? 0) - old.timeIntervalSince1970) < 0.001)
        await #expect(throws: EdgeStoreError.self) { try await store.logs(portal: "acme", name: name, limit: 1001) }
        await #expect(throws: EdgeStoreError.self) {
            try await store.appendLogs([FunctionLogLine(portal: "acme", name: name, version: 1, requestID: "x\u{0}", level: "info", message: "", at: Date())])
        }

        // Age: the 1,500 old lines go; count: of the 2 recent ones, keep 1.
        #expect(try await store.purgeLogs(olderThan: Date(timeIntervalSinceNow: -86400), keepPerFunction: 10) == 1500)
        #expect(try await store.purgeLogs(olderThan: Date(timeIntervalSinceNow: -86400), keepPerFunction: 1) == 1)
        #expect(try await store.logs(portal: "acme", name: name).map(\.requestID) == ["nul"])
    }
}
