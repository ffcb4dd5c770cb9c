import Foundation
import Logging
import Testing

@testable import Kernel

@Suite("C plugin ABI conformance", .serialized, .timeLimit(.minutes(3)))
struct PluginABITests {
    func config(_ name: String, _ path: String, required: Bool = false) -> PluginConfig {
        PluginConfig(name: name, path: path, required: required, configJSON: "{}", line: 1)
    }

    func load(_ configs: [PluginConfig]) async throws -> (PluginHost, CapturedLog) {
        let log = CapturedLog()
        let host = try await PluginHost(configs: configs, logger: Logger(label: "abi") { _ in log.handler() })
        return (host, log)
    }

    @Test("each broken plugin is refused with one clear line naming the problem")
    func brokenPlugins() async throws {
        let cases: [(fixture: String, name: String, expected: String)] = [
            ("wrong_major", "broken-wrong-major", "descriptor field abi_major: expected 1, found 2"),
            ("missing_entry", "broken-missing-entry", "missing entry symbol meltybase_plugin_entry"),
            ("init_fails", "broken-init-fails", "init failed (MB_ERR_UNAVAILABLE): cannot reach the licensing oracle"),
            ("null_callback", "broken-null-callback", "descriptor field handle_request: required callback is NULL"),
            ("wrong_struct_size", "broken-small-struct", "descriptor field struct_size: expected at least 112 (sizeof(mb_plugin_descriptor) of ABI 1.0), found 8"),
            ("bad_page_id", "broken-page-id", "descriptor field studio_pages[0].id: expected 1 to 63 characters of a-z, 0-9, '-' and '_', found \"Bad Page\""),
            (
                "studio_escape", "broken-studio-escape",
                "descriptor field studio_directory: expected a relative path of A-Z, a-z, 0-9, '.', '_', '-' and '/' without '..' or a leading '/', found \"../../etc\""
            ),
        ]
        for item in cases {
            let (host, log) = try await load([config(item.name, try TestPlugins.broken(item.fixture))])
            #expect(host.plugins.isEmpty, "\(item.fixture) should not load")
            #expect(host.failures.count == 1)
            #expect(host.failures.first?.reason.contains(item.expected) == true, "\(item.fixture): \(host.failures.first?.reason ?? "none")")
            let errorLines = log.all.filter { $0.hasPrefix("error") }
            #expect(errorLines.count == 1, "one log line for \(item.fixture), got \(errorLines)")
            #expect(errorLines.first?.contains(item.name) == true)
        }
    }

    @Test("a second plugin with a taken name is refused before its init runs, the first keeps serving")
    func takenName() async throws {
        let (host, log) = try await load([config("echo-c", try TestPlugins.echoC()), config("echo-c-dup", try TestPlugins.broken("taken_name"))])
        #expect(host.plugins.map(\.name) == ["echo-c"])
        #expect(
            host.failures.first?.reason.contains("name \"echo-c\" is already taken") == true
                || host.failures.first?.reason.contains("descriptor field name") == true)
        #expect(log.text.contains("not loaded"))
        await host.shutdown()
    }

    @Test("a taken name declared under the same table name is reported as taken")
    func takenNameSameTable() async throws {
        let (host, _) = try await load([config("echo-c", try TestPlugins.echoC()), config("echo-c", try TestPlugins.broken("taken_name"))])
        #expect(host.plugins.count == 1)
        #expect(host.failures.first?.reason.contains("already taken") == true)
        await host.shutdown()
    }

    @Test("a missing file and a name mismatch are explained")
    func missingAndMismatch() async throws {
        let (host, _) = try await load([config("ghost", "/nonexistent/libghost.so"), config("not-echo", try TestPlugins.echoC())])
        #expect(host.failures[0].reason.contains("file not found"))
        #expect(host.failures[1].reason.contains("descriptor field name: expected \"not-echo\""))
    }

    @Test("a required plugin that fails stops start-up with its message")
    func requiredFailure() async throws {
        let error = await #expect(throws: PluginLoadError.self) {
            _ = try await PluginHost(configs: [config("broken-init-fails", try TestPlugins.broken("init_fails"), required: true)], logger: Logger(label: "abi"))
        }
        #expect(error?.description.contains("cannot reach the licensing oracle") == true)
    }

    @Test("the C example and the Swift example load and describe themselves")
    func examplesLoad() async throws {
        let (host, _) = try await load([config("echo-c", try TestPlugins.echoC()), config("echo-swift", TestPlugins.echoSwift)])
        #expect(host.failures.isEmpty, "\(host.failures)")
        let c = try #require(host.plugin(named: "echo-c"))
        #expect(c.buildSignature == "c;ptr64" && c.abiVersion == "1.9" && c.routePrefix == "echo-c")
        let swift = try #require(host.plugin(prefix: "echo-swift"))
        #expect(swift.buildSignature.hasPrefix("swift-"))
        #expect(swift.acceptsWebSockets)
        await host.shutdown()
    }

    @Test("every plugin library links the shared Swift runtime and embeds no copy of it; the C plugin needs no Swift")
    func linkage() throws {
        let swiftPlugin = TestPlugins.echoSwift
        let needed = try run("/usr/bin/readelf", ["-d", swiftPlugin])
        #expect(needed.contains("libswiftCore.so"), "libEchoSwiftPlugin.so must link libswiftCore.so dynamically")
        let defined = try run("/usr/bin/nm", ["-D", "--defined-only", swiftPlugin])
        for runtimeSymbol in ["swift_retain", "swift_release", "swift_allocObject"] {
            #expect(!defined.split(separator: "\n").contains { $0.hasSuffix(" " + runtimeSymbol) }, "\(runtimeSymbol) must come from libswiftCore.so")
        }
        #expect(defined.contains("meltybase_plugin_entry"))
        let cNeeded = try run("/usr/bin/readelf", ["-d", try TestPlugins.echoC()])
        #expect(!cNeeded.contains("libswift"))
        let cExports = try run("/usr/bin/nm", ["-D", "--defined-only", try TestPlugins.echoC()])
        #expect(cExports.split(separator: "\n").filter { $0.contains(" T ") }.map { $0.split(separator: " ").last.map(String.init) ?? "" } == ["meltybase_plugin_entry"])
    }

    func run(_ executable: String, _ arguments: [String]) throws -> String {
        try runProcess(executable, arguments).output
    }
}
