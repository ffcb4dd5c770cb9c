import Foundation
import MeltyTestServices
import NIOPosix
import Testing

@testable import Kernel
@testable import MeltyEmbedded

/// The real `meltybase` binary, as a user runs it: embedded Postgres and Redis in a fresh
/// data directory, supervision, graceful shutdown, restart, and the command line.
@Suite("meltybase serve on the embedded default", .serialized, .timeLimit(.minutes(3)))
struct EmbeddedModeTests {
    /// A running `meltybase serve` child with its output in a file.
    final class Server {
        let process = Process()
        let logPath: String
        let port: Int
        let configPath: String
        let dataDirectory: String

        init(configPath: String, dataDirectory: String, port: Int) throws {
            self.configPath = configPath
            self.dataDirectory = dataDirectory
            self.port = port
            logPath = dataDirectory + ".log"
            FileManager.default.createFile(atPath: logPath, contents: nil)
            process.executableURL = URL(fileURLWithPath: TestPlugins.meltybaseBinary)
            process.arguments = ["serve", "--config", configPath, "--data-dir", dataDirectory, "--port", String(port)]
            process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MELTYBASE_") }
            let output = FileHandle(forWritingAtPath: logPath)
            process.standardOutput = output
            process.standardError = output
            try process.run()
        }

        var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        var url: String { "http://127.0.0.1:\(port)" }

        func waitForLog(_ text: String, seconds: Double = 60) throws {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if log.contains(text) { return }
                if !process.isRunning { throw TestFailure("meltybase exited (\(process.terminationStatus)) before logging \"\(text)\":\n\(log)") }
                usleep(100_000)
            }
            throw TestFailure("no \"\(text)\" in \(seconds) s:\n\(log)")
        }

        func stop() -> Int32 {
            guard process.isRunning else { return process.terminationStatus }
            process.interrupt()
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    static func freePort() throws -> Int {
        let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }

    /// A temp folder with a copy of the committed config pointing at the built plugins.
    static func workspace() throws -> (config: String, data: String) {
        let directory = try makeTemporaryDirectory("embedded")
        var text = try String(contentsOfFile: TestServices.repositoryRoot + "/plugins.toml", encoding: .utf8)
        text = text.replacingOccurrences(of: "[kernel]\n", with: "[kernel]\nplugin_dir = \"\(TestPlugins.productsDirectory)\"\n")
        text = text.replacingOccurrences(of: "path = \"libecho_c.so\"", with: "path = \"\(try TestPlugins.echoC())\"")
        try text.write(toFile: directory + "/plugins.toml", atomically: true, encoding: .utf8)
        return (directory + "/plugins.toml", directory + "/data")
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try runProcess(TestPlugins.meltybaseBinary, arguments, environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MELTYBASE_") })
    }

    @Test("a fresh data directory comes up with embedded Postgres and Redis, survives a Postgres crash, stops cleanly and restarts without re-initialising")
    func lifecycle() async throws {
        let (config, data) = try Self.workspace()
        let port = try Self.freePort()
        let server = try Server(configPath: config, dataDirectory: data, port: port)
        try server.waitForLog("MeltyBase is listening on http://127.0.0.1:\(port)")
        #expect(server.log.contains("initialising the embedded Postgres cluster"))
        #expect(try await HTTP.request(server.url + "/v1/system/status").status == 200)
        #expect(try await HTTP.request(server.url + "/p/demo/echo-c/echo").body == "echo")
        #expect(try await HTTP.request(server.url + "/p/demo/echo-swift/echo").body == "hello from Swift")

        // The command line talks to the running kernel and its database.
        let list = try Self.run(["plugins", "list", "--config", config, "--data-dir", data, "--port", String(port)])
        #expect(list.status == 0)
        #expect(list.output.contains("running kernel at"))
        #expect(list.output.split(separator: "\n").filter { $0.contains("loaded") && ($0.hasPrefix("echo-c ") || $0.hasPrefix("echo-swift ")) }.count == 2, "\(list.output)")
        let create = try Self.run(["portal", "create", "acme", "--plugins", "echo-c", "--config", config, "--data-dir", data])
        #expect(create.status == 0, "\(create.output)")
        try await eventually { try await HTTP.request(server.url + "/p/acme/echo-c/echo").status == 200 }
        // The keys are printed once and are this portal's: a different portal's key would be refused.
        let keyLines = create.output.split(separator: "\n").filter { $0.contains("anon:") || $0.contains("service_role:") }
        #expect(keyLines.count == 2, "\(create.output)")
        #expect(keyLines.allSatisfy { $0.split(separator: " ").last?.split(separator: ".").count == 3 }, "keys are JWTs")

        // A second kernel on the same data directory is refused.
        let second = try Self.run(["serve", "--config", config, "--data-dir", data, "--port", String(try Self.freePort())])
        #expect(second.status != 0)
        #expect(second.output.contains("already uses the data directory"))

        // Kill Postgres: the kernel restarts it and the database is usable again.
        let pidText = try String(contentsOfFile: try Self.clusterDirectory(data) + "/postmaster.pid", encoding: .utf8)
        let postgresPID = Int32(pidText.split(separator: "\n")[0])!
        kill(postgresPID, SIGKILL)
        try server.waitForLog("embedded Postgres exited unexpectedly; restarting")
        try await eventually(seconds: 30) {
            (try Self.run(["portal", "list", "--config", config, "--data-dir", data])).output.contains("acme")
        }

        // Graceful stop: exit 0, children gone.
        let redisPID = Self.pids(matching: data + "/redis/redis.sock")
        #expect(server.stop() == 0)
        #expect(server.log.contains("MeltyBase stopped"))
        #expect(Self.pids(matching: data + "/redis/redis.sock").isEmpty, "redis \(redisPID) still running")
        #expect(!FileManager.default.fileExists(atPath: try Self.clusterDirectory(data) + "/postmaster.pid"))

        // Restart reuses the cluster.
        let again = try Server(configPath: config, dataDirectory: data, port: port)
        try again.waitForLog("MeltyBase is listening")
        #expect(!again.log.contains("initialising the embedded Postgres cluster"))
        #expect(try await HTTP.request(again.url + "/p/acme/echo-c/echo").status == 200)
        #expect(again.stop() == 0)
    }

    @Test("a bad config stops start-up with the file, line and key")
    func badConfig() throws {
        let (config, data) = try Self.workspace()
        var text = try String(contentsOfFile: config, encoding: .utf8)
        text += "\n[portals.broken]\nplugin = [\"echo-c\"]\n"
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try Self.run(["serve", "--config", config, "--data-dir", data])
        #expect(result.status != 0)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let line = lines.firstIndex { $0.hasPrefix("plugin = ") }! + 1
        #expect(result.output.contains("plugins.toml:\(line): key 'portals.broken.plugin': unknown key"), "\(result.output)")
    }

    @Test("doctor reports this machine's parts and passes here")
    func doctor() throws {
        let result = try Self.run(["doctor", "--config", TestServices.repositoryRoot + "/plugins.toml"])
        #expect(result.output.contains("C library libpq: found"))
        #expect(result.output.contains("Postgres server"))
        #expect(result.output.contains("config: "))
    }

    static func clusterDirectory(_ data: String) throws -> String {
        let inside = data + "/postgres"
        if FileManager.default.fileExists(atPath: inside + "/PG_VERSION") { return inside }
        return try RelocatedCluster.folder(for: data) + "/postgres"
    }

    static func pids(matching text: String) -> [Int32] {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { entry -> Int32? in
            guard let pid = Int32(entry), let command = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { return nil }
            return command.replacingOccurrences(of: "\0", with: " ").contains(text) ? pid : nil
        } ?? []
    }
}
