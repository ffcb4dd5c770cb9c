import AsyncHTTPClient
import Foundation
import Logging
import MeltyTestServices
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

@testable import Kernel

/// A kernel running in this process on a free port, over the shared test Postgres
/// (a fresh database each) and Redis.
final class TestKernel: Sendable {
    let kernel: Kernel
    let url: String
    let log: CapturedLog
    let conninfo: String
    private let task: Task<Void, any Error>

    private init(kernel: Kernel, url: String, log: CapturedLog, conninfo: String, task: Task<Void, any Error>) {
        self.kernel = kernel
        self.url = url
        self.log = log
        self.conninfo = conninfo
        self.task = task
    }

    /// Starts a kernel from TOML text; `{ECHO_C}`, `{ECHO_SWIFT}`, `{VAULT}` and
    /// `{BROKEN:name}` are replaced by plugin paths. Pass `conninfo` to share a system database,
    /// and then `keysDirectory` (the first kernel's key set) as every kernel of a cluster needs.
    static func start(_ toml: String, conninfo: String? = nil, redisURL: String? = nil, keysDirectory: String? = nil) async throws -> TestKernel {
        var text = toml.replacingOccurrences(of: "{ECHO_SWIFT}", with: TestPlugins.echoSwift)
            .replacingOccurrences(of: "{VAULT}", with: TestPlugins.vault)
        if text.contains("{ECHO_C}") { text = text.replacingOccurrences(of: "{ECHO_C}", with: try TestPlugins.echoC()) }
        for name in ["wrong_major", "missing_entry", "init_fails", "null_callback", "taken_name", "wrong_struct_size", "slow_create"] {
            let token = "{BROKEN:\(name)}"
            if text.contains(token) { text = text.replacingOccurrences(of: token, with: try TestPlugins.broken(name)) }
        }
        let directory = try makeTemporaryDirectory("test")
        var config = try ConfigLoader(environment: [:]).parse(text, path: directory + "/plugins.toml")
        let database = try conninfo ?? TestServices.freshDatabase()
        config.databaseURL = database
        config.redisURL = try redisURL ?? TestServices.redisURL()
        if let keysDirectory { config.keysDirectorySetting = keysDirectory }
        if config.listeners == [ListenerConfig(host: "127.0.0.1", port: 3000)] { config.listeners[0].port = 0 }
        let log = CapturedLog()
        var logger = Logger(label: "test-kernel") { _ in log.handler() }
        logger.logLevel = .info
        let kernel = Kernel(config: config, logger: logger)
        let listening = AsyncStream<String>.makeStream()
        kernel.onListening = { url in listening.continuation.yield(url) }
        let task = Task {
            defer { listening.continuation.finish() }
            do {
                try await kernel.run(signals: [])
            } catch {
                listening.continuation.yield("failed: \(error)")
                throw error
            }
        }
        let first = try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask {
                for await url in listening.stream { return url }
                return "failed: kernel stopped before listening"
            }
            group.addTask {
                try await Task.sleep(for: .seconds(60))
                return "failed: no listener after 60 s"
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        guard let url = first, !url.hasPrefix("failed") else {
            task.cancel()
            throw TestFailure("kernel did not start (\(first ?? "")); log:\n\(log.text)")
        }
        return TestKernel(kernel: kernel, url: url, log: log, conninfo: database, task: task)
    }

    /// Stops the kernel gracefully and waits for it.
    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    /// A GET/POST through AsyncHTTPClient; returns status, headers and body text.
    func request(_ path: String, method: HTTPMethod = .GET, body: String? = nil, headers: [(String, String)] = []) async throws -> (status: Int, headers: HTTPHeaders, body: String)
    {
        try await HTTP.request(url + path, method: method, body: body, headers: headers)
    }
}

/// Small HTTP helpers over AsyncHTTPClient.
enum HTTP {
    static func request(
        _ url: String, method: HTTPMethod = .GET, body: String? = nil, headers: [(String, String)] = [], client: HTTPClient = .shared
    ) async throws -> (status: Int, headers: HTTPHeaders, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        return (Int(response.status.code), response.headers, String(buffer: bytes))
    }

    /// Parses a JSON object body.
    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }
}

/// Collects log lines (message plus metadata) for assertions.
final class CapturedLog: Sendable {
    private let lines = NIOLockedValueBox<[String]>([])

    func handler() -> some LogHandler { Handler(log: self) }

    var text: String { lines.withLockedValue { $0.joined(separator: "\n") } }
    var all: [String] { lines.withLockedValue { $0 } }

    func append(_ line: String) { lines.withLockedValue { $0.append(line) } }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            let merged = metadata.merging(extra ?? [:]) { $1 }
            let rendered = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            log.append("\(level) \(message) \(rendered)")
        }
    }
}
