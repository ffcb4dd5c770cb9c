import EdgeCore
import Foundation
import MeltyTestServices
import Testing

/// `deno check` through ``DeployChecker`` with the project's Deno (`.venv/bin/deno`), offline.
@Suite("Edge deploy checks with real Deno", .timeLimit(.minutes(3)))
struct DeployCheckerTests {
    static let deno = TestServices.repositoryRoot + "/.venv/bin/deno"
    static let cache = FileManager.default.temporaryDirectory.path + "/edgecore-deno-dir"

    static func checker() -> DeployChecker { DeployChecker(deno: deno, cacheDirectory: cache) }

    /// The problems of checking `files` (entry `index.ts`), or [] when it passes; the folder is written as is (no bundle validation).
    static func problems(_ files: [String: String], entrypoint: String = "index.ts") async throws -> [EdgeDeployError] {
        let folder = try TemporaryFolder()
        for (path, text) in files { try folder.write(path, text) }
        do {
            try await checker().check(directory: folder.path, entrypoint: entrypoint)
            return []
        } catch {
            return error.errors
        }
    }

    @Test("A TypeScript module with a local import and node: built-ins passes; the duration is reported")
    func valid() async throws {
        let files = [
            "index.ts":
                "import { greet } from \"./lib/greet.ts\";\nimport { Buffer } from \"node:buffer\";\nDeno.serve((_req: Request) => new Response(greet(Buffer.from(\"x\").toString())));\n",
            "lib/greet.ts": "export function greet(name: string): string {\n  return `hello ${name}`;\n}\n",
        ]
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try await Self.problems(files).isEmpty)
        let first = clock.now - start
        let again = clock.now
        #expect(try await Self.problems(files.mapValues { $0 + "\n// changed\n" }).isEmpty)
        print("deno check of a small module: \(first) (first), \(clock.now - again) (warm cache)")
    }

    @Test("A bundle is checked through a scratch folder that is removed afterwards")
    func bundle() async throws {
        let bundle = try FunctionBundle(files: ["main.ts": Array("const n: number = 1;\nexport default n;\n".utf8)], manifest: try FunctionManifest())
        let scratch = try TemporaryFolder()
        try await Self.checker().check(bundle, scratch: scratch.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
    }

    @Test("A syntax error is refused with file, line and column")
    func syntax() async throws {
        let problems = try await Self.problems(["index.ts": "import './lib/bad.ts';\n", "lib/bad.ts": "const a = 1;\nfunction f( {\n  return 2;\n}\n"])
        #expect(problems.count == 1)
        #expect(problems.first?.code == .syntaxError)
        #expect(problems.first?.file == "lib/bad.ts")
        #expect(problems.first?.line == 3 && problems.first?.column == 10)
        #expect(problems.first?.message.contains("/tmp") == false)
    }

    @Test("Type errors are all reported, each located")
    func types() async throws {
        let problems = try await Self.problems(["index.ts": "// comment\nconst n: number = \"x\";\nconst s: string = 1;\nexport { n, s };\n"])
        #expect(problems.map(\.code) == [.typeError, .typeError])
        #expect(problems.map(\.file) == ["index.ts", "index.ts"])
        #expect(problems.map(\.line) == [2, 3])
        #expect(problems.first?.column == 7)
        #expect(problems.first?.message.contains("Type 'string' is not assignable to type 'number'") == true)
    }

    @Test("Remote, npm and missing imports are refused by Deno too (nothing is downloaded)")
    func imports() async throws {
        let remote = try await Self.problems(["index.ts": "import { serve } from \"https://deno.land/std@0.177.0/http/server.ts\";\nserve(() => new Response(\"x\"));\n"])
        #expect(remote.first?.code == .remoteImport && remote.first?.file == "index.ts" && remote.first?.line == 1)
        let npm = try await Self.problems(["index.ts": "\nimport chalk from \"npm:chalk@5\";\nconsole.log(chalk);\n"])
        #expect(npm.first?.code == .remoteImport && npm.first?.line == 2)
        let missing = try await Self.problems(["index.ts": "import { x } from \"./nope.ts\";\nconsole.log(x);\n"])
        #expect(missing.first?.code == .unresolvedImport && missing.first?.line == 1 && missing.first?.message == "TS2307: Cannot find module 'nope.ts'.")
    }

    @Test("The bundle refuses remote imports before Deno runs")
    func bundleRefusesFirst() throws {
        #expect {
            try FunctionBundle(files: ["index.ts": Array("import { serve } from \"https://deno.land/std/http/server.ts\";\n".utf8)], manifest: try FunctionManifest())
        } throws: { ($0 as? EdgeDeployRejection)?.errors.first?.code == .remoteImport }
    }

    @Test("Deno missing or too slow is deno_unavailable")
    func unavailable() async throws {
        let folder = try TemporaryFolder()
        try folder.write("index.ts", "export {};\n")
        await #expect { try await DeployChecker(deno: "/nonexistent/deno", cacheDirectory: Self.cache).check(directory: folder.path, entrypoint: "index.ts") } throws: {
            ($0 as? EdgeDeployRejection)?.code == .denoUnavailable
        }
        await #expect {
            try await DeployChecker(deno: Self.deno, cacheDirectory: Self.cache, timeout: .milliseconds(50)).check(directory: folder.path, entrypoint: "index.ts")
        } throws: { ($0 as? EdgeDeployRejection)?.errors.first?.message.contains("did not finish") == true }
    }
}
