import EdgeCore
import Foundation
import MeltyJSON
import Testing

/// Names, manifests and bundles without Deno or Postgres: every refusal names the key or file.
@Suite("Edge function names, manifests and bundles")
struct FunctionManifestTests {
    static func manifest(_ json: String) throws(EdgeDeployError) -> FunctionManifest { try FunctionManifest(json: Array(json.utf8)) }

    static func refusal(_ json: String) -> EdgeDeployError? {
        do {
            _ = try manifest(json)
            return nil
        } catch {
            return error
        }
    }

    @Test("Function names: the pattern, with hostile values refused")
    func names() throws {
        for good in ["a", "hello-world", "x_1", "0abc", String(repeating: "a", count: 63)] {
            #expect(try FunctionName(good).value == good)
        }
        for bad in ["", "-a", "_a", "Hello", "a b", "a/b", "a\u{0}b", "'; DROP TABLE edge.functions; --", "é", "a\u{200B}", String(repeating: "a", count: 64), "ｆｕｌｌ"] {
            #expect(throws: EdgeDeployError.self) { try FunctionName(bad) }
        }
        #expect(throws: EdgeDeployError(.invalidName, "the function name is 64 bytes long; the limit is 63", hint: FunctionName.hint)) {
            try FunctionName(String(repeating: "b", count: 64))
        }
    }

    @Test("Manifest defaults and a full manifest")
    func parse() throws {
        let empty = try Self.manifest("{}")
        #expect(empty.verifyJWT && empty.allowNet.isEmpty && empty.secrets.isEmpty && empty.env.isEmpty && empty.entrypoint == nil && empty.limits == nil)
        let full = try Self.manifest(
            """
            {"entrypoint": "./src//main.ts", "verify_jwt": false, "allow_net": ["api.example.com", "api.example.com:8443", "10.0.0.5", "[2001:db8::1]:443"],
             "secrets": ["STRIPE_KEY", "_x"], "limits": {"memory_mb": 128, "nested": {"a": [1, 2]}}, "env": {"MODE": "prod", "EMPTY": ""}}
            """)
        #expect(full.entrypoint == "src/main.ts")
        #expect(!full.verifyJWT)
        #expect(full.allowNet.count == 4)
        #expect(full.secrets == ["STRIPE_KEY", "_x"])
        #expect(full.limits == ["memory_mb": 128, "nested": ["a": [1, 2]]])
        #expect(full.env == ["MODE": "prod", "EMPTY": ""])
        // Round trip through the stored JSON.
        #expect(try FunctionManifest(json: Array(full.jsonText.utf8)) == full)
    }

    @Test("Manifest refusals name the key and the rule")
    func refusals() {
        let cases: [(String, String)] = [
            (#"{"verifyJwt": true}"#, "unknown key 'verifyJwt'"),
            (#"{"verify_jwt": true, "verify_jwt": false}"#, "given twice"),
            (#"{"verify_jwt": "yes"}"#, "verify_jwt must be true or false"),
            (#"{"verify_jwt": 1e999}"#, "verify_jwt"),
            (#"{"allow_net": ["https://api.example.com"]}"#, "has a scheme"),
            (#"{"allow_net": ["api.example.com/v1"]}"#, "has a path"),
            (#"{"allow_net": ["*.example.com"]}"#, "does not support wildcard"),
            (#"{"allow_net": ["*"]}"#, "wildcard"),
            (#"{"allow_net": ["api.example.com:0"]}"#, "port"),
            (#"{"allow_net": ["api.example.com:99999999999999999999"]}"#, "port"),
            (#"{"allow_net": ["bücher.example"]}"#, "punycode"),
            (#"{"allow_net": ["a\u0000b"]}"#, "allow_net"),
            (#"{"allow_net": ["2001:db8::1"]}"#, "brackets"),
            (#"{"allow_net": "api.example.com"}"#, "allow_net must be an array"),
            (#"{"secrets": ["1ABC"]}"#, "not a secret name"),
            (#"{"secrets": ["DROP TABLE"]}"#, "not a secret name"),
            (#"{"secrets": ["K\u0000"]}"#, "not a secret name"),
            (#"{"secrets": ["A", "A"]}"#, "twice"),
            (#"{"limits": [1]}"#, "limits must be a JSON object"),
            (#"{"env": {"A": 1}}"#, "must be a string"),
            (#"{"env": {"A-B": "x"}}"#, "not a variable name"),
            (#"{"env": {"A": "x\u0000y"}}"#, "NUL"),
            (#"{"env": {"DENO_DIR": "/tmp"}}"#, "reserves"),
            (#"{"secrets": ["A"], "env": {"A": "x"}}"#, "both a secret"),
            (#"{"entrypoint": "../x.ts"}"#, "'..'"),
            (#"{"entrypoint": "/etc/passwd.ts"}"#, "absolute"),
            (#"{"entrypoint": "readme.md"}"#, "not a module"),
            ("[1]", "not a JSON object"),
            ("{", "not a JSON object"),
        ]
        for (json, expected) in cases {
            let error = Self.refusal(json)
            #expect(error?.code == .invalidManifest, "\(json)")
            #expect(((error?.message ?? "") + " " + (error?.hint ?? "")).contains(expected), "\(json) → \(error?.message ?? "accepted")")
            #expect(error?.file == "function.json")
        }
        let hugeValue = "{\"env\": {\"A\": \"" + String(repeating: "x", count: 4097) + "\"}}"
        #expect(Self.refusal(hugeValue)?.message.contains("4097 bytes") == true)
    }

    @Test("Bundle from a folder: dotfiles and node_modules skipped, manifest read, escaping symlinks and odd paths refused")
    func loadFolder() throws {
        let root = try TemporaryFolder()
        try root.write("index.ts", "import { x } from \"./lib/x.ts\";\nconsole.log(x);\n")
        try root.write("lib/x.ts", "export const x = 1;\n")
        try root.write(".env", "SECRET=1")
        try root.write("node_modules/pkg/index.js", "module.exports = 1")
        try root.write("function.json", #"{"verify_jwt": false, "allow_net": ["api.example.com"]}"#)
        let bundle = try FunctionBundle.load(directory: root.path)
        #expect(Set(bundle.files.keys) == ["index.ts", "lib/x.ts"])
        #expect(bundle.entrypoint == "index.ts")
        #expect(bundle.manifest.entrypoint == "index.ts")
        #expect(!bundle.manifest.verifyJWT)

        // A symlink inside the folder is followed.
        try FileManager.default.createSymbolicLink(atPath: root.path + "/lib/y.ts", withDestinationPath: "x.ts")
        #expect(try FunctionBundle.load(directory: root.path).files["lib/y.ts"] == Array("export const x = 1;\n".utf8))

        // A symlink out of the folder is refused, naming it.
        let outside = try TemporaryFolder()
        try outside.write("secret.txt", "s3cret")
        try FileManager.default.createSymbolicLink(atPath: root.path + "/lib/leak.txt", withDestinationPath: outside.path + "/secret.txt")
        #expect {
            try FunctionBundle.load(directory: root.path)
        } throws: { error in
            let rejection = error as? EdgeDeployRejection
            return rejection?.code == .invalidBundle && rejection?.errors.first?.file == "lib/leak.txt" && rejection?.errors.first?.message.contains("outside") == true
        }
        try FileManager.default.removeItem(atPath: root.path + "/lib/leak.txt")
        try FileManager.default.createSymbolicLink(atPath: root.path + "/up", withDestinationPath: "..")
        #expect(throws: EdgeDeployRejection.self) { try FunctionBundle.load(directory: root.path) }
        try FileManager.default.removeItem(atPath: root.path + "/up")

        // No entrypoint.
        let empty = try TemporaryFolder()
        try empty.write("lib.ts", "export {}")
        #expect { try FunctionBundle.load(directory: empty.path) } throws: { ($0 as? EdgeDeployRejection)?.errors.first?.message.contains("no entrypoint") == true }
    }

    @Test("Bundle paths: '..', absolute, backslashes and duplicates after normalisation are refused; limits hold")
    func paths() throws {
        let manifest = try FunctionManifest()
        let code = Array("export default 1;\n".utf8)
        for bad in ["../x.ts", "a/../../x.ts", "/etc/x.ts", "a\\b.ts", "a\u{0}.ts", "a\nb.ts", ""] {
            #expect(throws: EdgeDeployRejection.self, "\(bad)") { try FunctionBundle(files: ["index.ts": code, bad: code], manifest: manifest) }
        }
        #expect(throws: EdgeDeployRejection.self) { try FunctionBundle(files: ["index.ts": code, "./index.ts": code], manifest: manifest) }
        let normalised = try FunctionBundle(files: ["./index.ts": code, "lib//./y.ts": code], manifest: manifest)
        #expect(Set(normalised.files.keys) == ["index.ts", "lib/y.ts"])
        var many: [String: [UInt8]] = ["index.ts": code]
        for index in 0..<FunctionBundle.maxFiles { many["f\(index).txt"] = [] }
        #expect { try FunctionBundle(files: many, manifest: manifest) } throws: { ($0 as? EdgeDeployRejection)?.errors.first?.message.contains("limit is 500") == true }
        let big = [UInt8](repeating: 0x20, count: FunctionBundle.maxBytes / 2 + 1)
        #expect(throws: EdgeDeployRejection.self) { try FunctionBundle(files: ["index.ts": code, "a.txt": big, "b.txt": big], manifest: manifest) }
    }

    @Test("Imports: remote, npm, jsr, absolute, bare and escaping specifiers are refused with file and line; node: is allowed")
    func imports() throws {
        let manifest = try FunctionManifest()
        func problems(_ files: [String: String]) -> [EdgeDeployError] {
            do {
                _ = try FunctionBundle(files: files.mapValues { Array($0.utf8) }, manifest: manifest)
                return []
            } catch {
                return error.errors
            }
        }
        #expect(problems(["index.ts": "import { Buffer } from \"node:buffer\";\nimport x from './lib/x.ts';\n", "lib/x.ts": "export default 1;"]).isEmpty)
        let remote = problems([
            "index.ts": "// import 'https://in.a.comment'\nconst s = \"from 'https://in.a.string'\";\nimport { serve } from \"https://deno.land/std/http/server.ts\";\n"
        ])
        #expect(remote.count == 1)
        #expect(remote.first?.code == .remoteImport && remote.first?.file == "index.ts" && remote.first?.line == 3 && remote.first?.column == 23)
        let nested = problems([
            "index.ts": "import './lib/a.ts';",
            "lib/a.ts": "\n\nexport * from 'npm:chalk@5';\nconst m = await import(\"jsr:@std/assert\");\n/// <reference types=\"https://x/y.d.ts\" />\n",
        ])
        #expect(nested.map(\.code) == [.remoteImport, .remoteImport, .remoteImport])
        #expect(nested.map(\.file) == ["lib/a.ts", "lib/a.ts", "lib/a.ts"])
        #expect(nested.map(\.line) == [3, 4, 5])
        let local = problems(["index.ts": "import '../outside.ts';\nimport '/etc/hostname';\nimport 'lodash';\nimport 'file:///etc/passwd';\n"])
        #expect(local.map(\.code) == [.unresolvedImport, .unresolvedImport, .unresolvedImport, .unresolvedImport])
        #expect(local.map(\.line) == [1, 2, 3, 4])
        // A module the entrypoint does not reach is not judged.
        #expect(problems(["index.ts": "export {};", "test.ts": "import 'jsr:@std/assert';"]).isEmpty)
        // Regular expressions and templates do not confuse the scanner.
        #expect(problems(["index.ts": "const r = /from \"https:\\/\\/x\"/g;\nconst t = `${1}import \"https://x\"`;\nexport { r, t };\n"]).isEmpty)
    }

    @Test("Decode the admin endpoint's body")
    func decode() throws {
        let body = #"""
            {"name": "hello", "files": {"index.ts": "import { g } from './lib/g.ts';\nDeno.serve(() => new Response(g()));\n", "lib/g.ts": "export const g = () => 'hi';\n"},
             "verify_jwt": false, "env": {"MODE": "test"}}
            """#
        let (name, bundle) = try FunctionBundle.decode(json: Array(body.utf8))
        #expect(name.value == "hello")
        #expect(bundle.entrypoint == "index.ts" && !bundle.manifest.verifyJWT && bundle.manifest.env == ["MODE": "test"])
        #expect(bundle.files["lib/g.ts"] == Array("export const g = () => 'hi';\n".utf8))

        func refusal(_ json: String) -> EdgeDeployError? {
            do {
                _ = try FunctionBundle.decode(json: Array(json.utf8))
                return nil
            } catch {
                return error.errors.first
            }
        }
        #expect(refusal(#"{"name": "Hello", "files": {"index.ts": ""}}"#)?.code == .invalidName)
        #expect(refusal(#"{"files": {"index.ts": ""}}"#)?.code == .invalidName)
        #expect(refusal(#"{"name": "a", "files": {}}"#)?.code == .invalidBundle)
        #expect(refusal(#"{"name": "a", "files": {"index.ts": "a\u0000b"}}"#)?.message.contains("NUL") == true)
        #expect(refusal(#"{"name": "a", "files": {"index.ts": 1}}"#)?.file == "index.ts")
        #expect(refusal(#"{"name": "a", "files": {"index.ts": "", "index.ts": ""}}"#)?.message.contains("twice") == true)
        #expect(refusal(#"{"name": "a", "files": {"../x.ts": ""}}"#)?.message.contains("'..'") == true)
        #expect(refusal(#"{"name": "a", "files": {"index.ts": ""}, "colour": 1}"#)?.message.contains("unknown key 'colour'") == true)
        #expect(refusal(#"{"name": "a", "files": {"index.ts": ""}, "verify_jwt": null, "allow_net": ["*.x.com"]}"#)?.code == .invalidManifest)
        #expect(refusal("not json")?.code == .invalidBundle)
    }

    @Test("Materialize writes 0644 files and 0755 folders atomically; archive round-trips")
    func materialize() throws {
        let bundle = try FunctionBundle(
            files: ["index.ts": Array("export {};\n".utf8), "lib/deep/x.ts": Array("export const x = 1;\n".utf8)], manifest: try FunctionManifest(env: ["A": "b"]))
        let parent = try TemporaryFolder()
        let target = parent.path + "/v1"
        try bundle.materialize(into: target)
        #expect(try String(contentsOfFile: target + "/lib/deep/x.ts", encoding: .utf8) == "export const x = 1;\n")
        let fileMode = try FileManager.default.attributesOfItem(atPath: target + "/index.ts")[.posixPermissions] as? Int
        let folderMode = try FileManager.default.attributesOfItem(atPath: target + "/lib/deep")[.posixPermissions] as? Int
        #expect(fileMode == 0o644 && folderMode == 0o755)
        #expect(throws: EdgeFileError.self) { try bundle.materialize(into: target) }
        try bundle.materialize(into: target, replacing: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path) == ["v1"])

        let restored = FunctionBundle(archive: bundle.archive, manifest: bundle.manifest)
        #expect(restored == bundle)
        #expect(FunctionBundle(archive: Array(bundle.archive.dropLast()), manifest: bundle.manifest) == nil)
        #expect(bundle.canonicalListing == bundle.archive + Array(bundle.manifest.jsonText.utf8))
    }
}

/// A folder under the system's temporary directory, removed when the value goes away.
final class TemporaryFolder {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.path + "/edgecore-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func write(_ relative: String, _ text: String) throws {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: full))
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
