import Foundation
import Logging
import MeltyTestServices
import NIOConcurrencyHelpers
import Testing

@testable import Kernel

/// ABI 1.5 from the kernel's side: plugin Studio pages (listing, assets, the page address),
/// plugin health, and plugin commands run in-process with a CLI host.
@Suite("ABI 1.5: plugin pages, commands and health", .serialized, .timeLimit(.minutes(3)))
struct PluginPagesAndCommandsTests {
    static func toml() throws -> String {
        """
        [plugins.echo-c]
        path = "\(try TestPlugins.echoC())"
        [plugins.acme-report]
        path = "\(try TestPlugins.acmeReport())"
        [portals.alpha]
        plugins = ["acme-report"]
        """
    }

    @Test("pages of enabled plugins are listed for admins; their assets and page addresses are served with the Studio's headers; health is reported")
    func pagesAssetsHealth() async throws {
        let instance = try await AdminIdentityTests.instance(toml: try Self.toml())
        defer { Task { await instance.kernel.stop() } }
        #expect(try await instance.request("/v1/hub/studio/pages").status == 401)
        let token = try await instance.accessToken()
        let listing = try await instance.request("/v1/hub/studio/pages", token: token)
        #expect(listing.status == 200, "\(listing.body)")
        let pages = try #require(listing.json["pages"] as? [[String: Any]])
        // echo-c declares a page too, but no portal enables it.
        #expect(pages.count == 1, "\(pages)")
        let page = try #require(pages.first)
        #expect(page["plugin"] as? String == "acme-report" && page["id"] as? String == "report" && page["title"] as? String == "Acme report")
        #expect(page["portals"] as? [String] == ["alpha"] && page["path"] as? String == "plugins/acme-report/report")
        let module = try #require(page["module"] as? String)
        #expect(module.firstMatch(of: #/^\/dashboard\/plugins\/acme-report\/assets\/[0-9a-f]{16}\/pages\/report\.js$/#) != nil, "\(module)")

        let script = try await instance.kernel.request(module)
        #expect(script.status == 200 && script.body.contains("export default"))
        #expect(script.headers.first(name: "content-type") == "text/javascript; charset=utf-8")
        #expect(script.headers.first(name: "cache-control") == "public, max-age=31536000, immutable")
        #expect(script.headers.first(name: "content-security-policy")?.contains("script-src 'self'") == true)
        #expect(script.headers.first(name: "x-content-type-options") == "nosniff")
        for missing in [
            "/dashboard/plugins/acme-report/assets/0123456789abcdef/pages/report.js",
            module.replacingOccurrences(of: "report.js", with: "nope.js"),
            "/dashboard/plugins/nobody/assets/0123456789abcdef/x.js",
        ] {
            let answer = try await instance.kernel.request(missing)
            #expect(answer.status == 404 && HTTP.json(answer.body)["code"] as? String == "asset_not_found", "\(missing): \(answer.body)")
        }
        let shell = try await instance.kernel.request("/dashboard/plugins/acme-report/report")
        #expect(shell.status == 200 && shell.headers.first(name: "content-type") == "text/html; charset=utf-8")

        let report = try await instance.request("/v1/hub/plugins", token: token)
        let plugins = try #require(report.json["plugins"] as? [[String: Any]])
        let health = Dictionary(
            uniqueKeysWithValues: plugins.compactMap { plugin -> (String, [String: Any])? in
                guard let name = plugin["name"] as? String, let health = plugin["health"] as? [String: Any] else { return nil }
                return (name, health)
            })
        #expect(health["echo-c"]?["status"] as? String == "ok", "\(health)")
        #expect(health["acme-report"]?["status"] as? String == "degraded")
        #expect(health["acme-report"]?["message"] as? String == "fixture reports degraded on purpose")
    }

    @Test("a Swift plugin reports health through the SDK; a plugin without the callback is not reported")
    func swiftHealth() async throws {
        let host = try await PluginHost(
            configs: [
                PluginConfig(name: "echo-swift", path: TestPlugins.echoSwift, required: true, configJSON: "{}", line: 1),
                PluginConfig(name: "slow-create", path: try TestPlugins.broken("slow_create"), required: true, configJSON: "{}", line: 2),
            ], logger: Logger(label: "health") { _ in SwiftLogNoOpLogHandler() })
        let health = await host.health()
        #expect(health["echo-swift"] == PluginHealth(status: "ok", message: "echoing"))
        #expect(health["slow-create"] == .notReported)
        #expect(PluginHealth.parse(Array("{\"status\":\"bad\"}".utf8)).status == "failing")
        await host.shutdown()
    }

    /// The plugin's writes, by stream.
    final class Output: Sendable {
        private let box = NIOLockedValueBox<(out: [UInt8], err: [UInt8])>(([], []))
        func write(_ stream: PluginCommandRunner.Stream, _ bytes: [UInt8]) {
            box.withLockedValue { stream == .output ? $0.out.append(contentsOf: bytes) : $0.err.append(contentsOf: bytes) }
        }
        var out: String { String(decoding: box.withLockedValue { $0.out }, as: UTF8.self) }
        var err: String { String(decoding: box.withLockedValue { $0.err }, as: UTF8.self) }
    }

    @Test("a plugin command runs in-process with a CLI host: output, exit status, audit entry; unknown commands are refused")
    func commands() async throws {
        let conninfo = try TestServices.freshDatabase()
        let directory = try makeTemporaryDirectory("plugin-commands")
        var config = try ConfigLoader(environment: [:]).parse(try Self.toml(), path: directory + "/plugins.toml")
        config.databaseURL = conninfo
        // The audit schema, as a kernel that ran once leaves it.
        let database = SystemDatabase(conninfo: conninfo)
        try await database.migrate()
        database.close()
        let runner = PluginCommandRunner(config: config, logger: Logger(label: "cli") { _ in SwiftLogNoOpLogHandler() })

        let description = try runner.describe(plugin: "echo-c")
        #expect(description.commands.map(\.name) == ["hello"] && description.commands[0].help.contains("--name NAME"))

        let hello = Output()
        let status = try await runner.run(plugin: "echo-c", command: "hello", arguments: ["--name", "Ada"]) { hello.write($0, $1) }
        #expect(status == 0 && hello.out == "Hello, Ada! (echo-c 1.0.0)\n" && hello.err.isEmpty, "\(hello.out) \(hello.err)")

        let usage = Output()
        #expect(try await runner.run(plugin: "echo-c", command: "hello", arguments: ["--bogus"]) { usage.write($0, $1) } == 2)
        #expect(usage.err.contains("unexpected argument \"--bogus\""))

        let unknown = await #expect(throws: PluginCommandRunner.Failure.self) {
            _ = try await runner.run(plugin: "echo-c", command: "nope", arguments: []) { _, _ in }
        }
        #expect(unknown?.exitStatus == 2)
        #expect(unknown?.description == "plugin \"echo-c\" has no command \"nope\"; its commands: hello (meltybase echo-c --help)")
        let noPlugin = await #expect(throws: PluginCommandRunner.Failure.self) {
            _ = try await runner.run(plugin: "ghost", command: "x", arguments: []) { _, _ in }
        }
        #expect(noPlugin?.exitStatus == 2 && noPlugin?.description.hasPrefix("no plugin \"ghost\" in ") == true)

        // A Swift plugin's command through the SDK: typed options, output writer.
        var swiftConfig = config
        swiftConfig.plugins.append(PluginConfig(name: "echo-swift", path: TestPlugins.echoSwift, required: false, configJSON: "{}", line: 9))
        let swiftRunner = PluginCommandRunner(config: swiftConfig, logger: Logger(label: "cli") { _ in SwiftLogNoOpLogHandler() })
        let echoed = Output()
        #expect(try await swiftRunner.run(plugin: "echo-swift", command: "echo", arguments: ["hello", "--upper", "world"]) { echoed.write($0, $1) } == 0)
        #expect(echoed.out == "HELLO WORLD\n", "\(echoed.out) \(echoed.err)")
        let badOption = Output()
        #expect(try await swiftRunner.run(plugin: "echo-swift", command: "echo", arguments: ["--loud"]) { badOption.write($0, $1) } == 2)
        #expect(badOption.err == "Error: unknown option --loud; options: --upper\n", "\(badOption.err)")

        let record = Output()
        #expect(try await runner.run(plugin: "acme-report", command: "record", arguments: ["--note", "hello there"]) { record.write($0, $1) } == 0)
        #expect(record.out == "recorded note: hello there\n")
        let connection = try await TestServices.connect(conninfo)
        defer { connection.close() }
        let rows = try await connection.query("SELECT actor, target, details::text AS details FROM meltybase.audit_log WHERE action = 'acme.note'")
        #expect(rows.rows.count == 1, "\(rows.rows)")
        #expect(rows.rows.first?[0] == "plugin:acme-report" && rows.rows.first?[1] == "cli")
        #expect(rows.rows.first?[2]?.contains("hello there") == true)
    }

    @Test("a Studio folder is read bounded: dotfiles skipped, links out of the folder refused, file count and size capped")
    func studioFolderBounds() throws {
        let directory = try makeTemporaryDirectory("plugin-studio")
        let manager = FileManager.default
        try manager.createDirectory(atPath: directory + "/pages", withIntermediateDirectories: true)
        try manager.createDirectory(atPath: directory + "/.git", withIntermediateDirectories: true)
        try Data("export default {}".utf8).write(to: URL(fileURLWithPath: directory + "/pages/a.js"))
        try Data("secret".utf8).write(to: URL(fileURLWithPath: directory + "/.env"))
        try Data("x".utf8).write(to: URL(fileURLWithPath: directory + "/.git/config"))
        try manager.createSymbolicLink(atPath: directory + "/inside.js", withDestinationPath: directory + "/pages/a.js")
        let set = try StudioFileSet(directory: directory, limits: .plugin)
        #expect(Set(set.files.keys) == ["pages/a.js", "inside.js"])
        #expect(set.files["pages/a.js"]?.contentType == "text/javascript; charset=utf-8")

        try manager.createSymbolicLink(atPath: directory + "/passwd.js", withDestinationPath: "/etc/passwd")
        #expect(throws: StudioFileSet.ReadError.self) { try StudioFileSet(directory: directory, limits: .plugin) }
        try manager.removeItem(atPath: directory + "/passwd.js")

        #expect(throws: StudioFileSet.ReadError.self) { try StudioFileSet(directory: directory, limits: .init(maxFiles: 1, maxTotalBytes: 1024)) }
        #expect(throws: StudioFileSet.ReadError.self) { try StudioFileSet(directory: directory, limits: .init(maxFiles: 10, maxTotalBytes: 8)) }
        #expect(throws: StudioFileSet.ReadError.self) { try StudioFileSet(directory: directory + "/missing", limits: .plugin) }

        for good in ["studio", "MeltyBase_DatabasePlugin.resources/Studio", "pages/report.js"] {
            #expect(PluginExtensions.isRelativePath(good), "\(good)")
        }
        for bad in ["", "/etc", "../x", "a/../b", "a/./b", "a//b", ".hidden/x", "a b", "a\\b", "x/"] {
            #expect(!PluginExtensions.isRelativePath(bad), "\(bad)")
        }
        #expect(PluginExtensions.isCommandName("rotate-master") && !PluginExtensions.isCommandName("-x") && !PluginExtensions.isCommandName("Rotate"))
    }
}
