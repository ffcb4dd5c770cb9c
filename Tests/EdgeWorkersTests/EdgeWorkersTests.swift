import EdgeWorkers
import Foundation
import MeltyJSON
import MeltyPostgres
import MeltyTestServices
import Synchronization
import Testing

/// The worker pool against real Deno and the real runner: requests and streamed bodies both
/// ways, concurrency, every limit (and a healthy worker right after each), crashes, logs,
/// start failures and a stop that leaves no process.
@Suite("EdgeWorkers: Deno worker pool and its limits", .serialized, .timeLimit(.minutes(5)))
struct EdgeWorkersTests {
    let loop = PostgresEventLoop(name: "test-edge-workers")
    static let deno = TestServices.repositoryRoot + "/.venv/bin/deno"
    static let runner = TestServices.repositoryRoot + "/Plugins/Edge/Runtime/runner.js"
    /// This process's scratch folder (function folders, DENO_DIR), removed at exit.
    static let scratch: String = {
        let path = scratchPath()
        try? FileManager.default.createDirectory(atPath: path + "/deno", withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: EdgeWorkersTests.scratchPath()) }
        return path
    }()
    static func scratchPath() -> String { NSTemporaryDirectory() + "edge-workers-tests-\(getpid())" }
    static var denoDirectory: String { scratch + "/deno" }

    /// The test function: one route per behaviour.
    static let handler = """
        export default async (req) => {
          const url = new URL(req.url);
          const path = url.pathname;
          if (req.method === "POST") {
            const text = await req.text();
            return new Response(`got ${text.length}:${text.slice(0, 12)}`, { status: 201, headers: { "x-kind": "post" } });
          }
          if (path.endsWith("/stream")) {
            let i = 0;
            const body = new ReadableStream({
              pull(controller) {
                if (i === 300) return controller.close();
                controller.enqueue(new TextEncoder().encode(`chunk-${i++};`));
              },
            });
            return new Response(body);
          }
          if (path.endsWith("/loop")) { for (;;) {} }
          if (path.endsWith("/heap")) { const a = []; for (;;) a.push(new Array(1e6).fill(1.5)); }
          if (path.endsWith("/buffers")) {
            const held = [];
            for (;;) { const b = new Uint8Array(8 << 20); b.fill(1); held.push(b); await new Promise((r) => setTimeout(r, 1)); }
          }
          if (path.endsWith("/hang")) { await new Promise(() => {}); }
          if (path.endsWith("/big")) { return new Response("x".repeat(Number(url.searchParams.get("n")))); }
          if (path.endsWith("/throw")) { throw new Error("boom from the function"); }
          if (path.endsWith("/log")) { console.log("hello from", path); return new Response("logged"); }
          if (path.endsWith("/exit")) { setTimeout(() => Deno.exit(3), 10); await new Promise(() => {}); }
          if (path.endsWith("/env")) { return new Response(Deno.env.get("GREETING") ?? "none"); }
          if (path.endsWith("/slow")) { await new Promise((r) => setTimeout(r, 50)); return new Response("slow"); }
          return new Response(`hello ${req.method}`, { headers: { "content-type": "text/plain" } });
        };
        """

    /// A function folder holding `source` as index.ts.
    static func functionDirectory(_ source: String) throws -> String {
        let directory = scratch + "/fn-" + UUID().uuidString.lowercased()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try source.write(toFile: directory + "/index.ts", atomically: true, encoding: .utf8)
        return directory
    }

    func pool(_ limits: EdgeLimits = EdgeLimits(), source: String = handler, logs: LogCollector = LogCollector()) throws -> FunctionPool {
        let directory = try Self.functionDirectory(source)
        let launch = WorkerLaunch(
            denoPath: Self.deno, runnerPath: Self.runner, functionDirectory: directory, entryPath: directory + "/index.ts",
            denoDirectory: Self.denoDirectory, environment: ["GREETING": "hi"], limits: limits)
        return FunctionPool(name: "probe", launch: launch, loop: loop, logSink: { logs.append($0) })
    }

    static func get(_ path: String, id: String = UUID().uuidString) -> InvocationRequest {
        InvocationRequest(requestID: id, method: "GET", url: "http://localhost/probe\(path)")
    }

    static func noBody() -> RequestBodySource { { nil } }

    /// A body source that hands out `chunks` one per pull.
    static func chunks(_ chunks: [[UInt8]]) -> RequestBodySource {
        let next = Counter()
        return { next.take(chunks) }
    }

    /// Runs a GET and returns what the sink saw.
    func run(_ pool: FunctionPool, _ path: String, id: String = UUID().uuidString) async -> (InvocationOutcome, CollectingSink) {
        let sink = CollectingSink()
        let outcome = await pool.invoke(Self.get(path, id: id), body: Self.noBody(), response: sink)
        return (outcome, sink)
    }

    func expectHealthy(_ pool: FunctionPool, sourceLocation: SourceLocation = #_sourceLocation) async {
        let (outcome, sink) = await run(pool, "/")
        #expect(outcome == .completed(status: 200, bodyBytes: 9), sourceLocation: sourceLocation)
        #expect(sink.text == "hello GET", sourceLocation: sourceLocation)
    }

    /// Children of this process whose command line mentions `directory`, and whether each is a zombie.
    static func workerProcesses(of directory: String) -> [pid_t] {
        let me = getpid()
        var found: [pid_t] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, pid_t(fields[1]) == me else { continue }
            let commandLine = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
            // A zombie has an empty command line: count it too.
            if commandLine.contains(directory) || fields[0] == "Z" { found.append(pid) }
        }
        return found
    }

    @Test("boots, answers a GET and a POST whose body arrives in chunks")
    func getAndPost() async throws {
        let pool = try pool()
        try await pool.prewarm()
        #expect(pool.stats.workers == 1)
        await expectHealthy(pool)

        let sink = CollectingSink()
        let body = (0..<5).map { Array(String(repeating: "abcdefghij", count: 100 + $0).utf8) }
        let request = InvocationRequest(
            requestID: "post-1", method: "POST", url: "http://localhost/probe/post", headers: [("content-type", "text/plain")], hasBody: true)
        let outcome = await pool.invoke(request, body: Self.chunks(body), response: sink)
        let total = body.reduce(0) { $0 + $1.count }
        #expect(outcome == .completed(status: 201, bodyBytes: sink.body.count))
        #expect(sink.text == "got \(total):abcdefghijab")
        #expect(sink.headers.contains { $0.0 == "x-kind" && $0.1 == "post" })
        await pool.stop()
    }

    @Test("a response of 300 chunks streams whole")
    func streamedResponse() async throws {
        let pool = try pool()
        let (outcome, sink) = await run(pool, "/stream")
        let expected = (0..<300).map { "chunk-\($0);" }.joined()
        #expect(outcome == .completed(status: 200, bodyBytes: expected.utf8.count))
        #expect(sink.text == expected)
        #expect(sink.ended)
        await pool.stop()
    }

    @Test("100 concurrent invocations are all answered (queued beyond 4 workers × 16)")
    func concurrent() async throws {
        let pool = try pool()
        try await pool.prewarm()
        let statuses = await withTaskGroup(of: InvocationOutcome.self) { group in
            for index in 0..<100 { group.addTask { await run(pool, "/slow", id: "c\(index)").0 } }
            var outcomes: [InvocationOutcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(statuses.count == 100)
        #expect(statuses.allSatisfy { $0 == .completed(status: 200, bodyBytes: 4) })
        #expect(pool.stats.workers <= 4)
        #expect(pool.stats.invocations == 100)
        await pool.stop()
    }

    @Test("past max_workers × max_concurrent_requests and max_queued, requests get concurrency_limit")
    func concurrencyLimit() async throws {
        var limits = EdgeLimits()
        limits.maxWorkers = 1
        limits.maxConcurrentPerWorker = 1
        limits.maxQueued = 1
        let pool = try pool(limits)
        try await pool.prewarm()
        let outcomes = await withTaskGroup(of: InvocationOutcome.self) { group in
            for index in 0..<3 {
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(10 * index))
                    return await run(pool, "/slow").0
                }
            }
            var outcomes: [InvocationOutcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(outcomes.count { $0 == .completed(status: 200, bodyBytes: 4) } == 2)
        let refused = outcomes.compactMap { outcome -> EdgeFailure? in if case .failed(let failure) = outcome { failure } else { nil } }
        #expect(refused.map(\.code) == [.concurrencyLimit])
        #expect(refused.first?.status == 503)
        await pool.stop()
    }

    @Test("after idle_seconds without requests, workers a burst started beyond warm_workers stop")
    func idleScaleDown() async throws {
        var limits = EdgeLimits()
        limits.maxWorkers = 3
        limits.maxConcurrentPerWorker = 1
        limits.warmWorkers = 1
        limits.idleSeconds = 1
        let pool = try pool(limits)
        try await pool.prewarm()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<3 { group.addTask { _ = await run(pool, "/slow") } }
        }
        #expect(pool.stats.workers >= 2)
        let deadline = ContinuousClock.now + .seconds(10)
        while pool.stats.workers > 1, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(pool.stats.workers == 1)
        let after = await run(pool, "/ok").0
        if case .completed(status: 200, _) = after {} else { Issue.record("the remaining worker did not answer: \(after)") }
        await pool.stop()
    }

    @Test("a module without a handler fails to start with the runner's message")
    func bootFailure() async throws {
        let pool = try pool(source: "export const notAHandler = 1;\n")
        do {
            try await pool.prewarm()
            Issue.record("expected a start error")
        } catch {
            #expect(error.message.contains("exports no handler"))
        }
        await pool.stop()

        let throwing = try self.pool(source: "const x = 1;\nthrow new Error(\"bad import\");\nexport default () => new Response(\"\");\n")
        do {
            try await throwing.prewarm()
            Issue.record("expected a start error")
        } catch {
            #expect(error.message.contains("bad import"))
            #expect(error.location?.contains("index.ts:2") == true)
        }
        await throwing.stop()
    }

    @Test("an infinite loop ends at cpu_hard_ms; the next request is served")
    func cpuLimit() async throws {
        var limits = EdgeLimits()
        limits.cpuSoftMilliseconds = 200
        limits.cpuHardMilliseconds = 400
        let logs = LogCollector()
        let pool = try pool(limits, logs: logs)
        try await pool.prewarm()
        let (outcome, _) = await run(pool, "/loop", id: "looping")
        guard case .failed(let failure) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(failure.code == .cpuTimeLimit)
        #expect(failure.status == 546)
        #expect(failure.message.contains("400 ms"))
        #expect(logs.lines.contains { $0.requestID == "looping" && $0.level == "error" })
        await expectHealthy(pool)
        #expect(pool.stats.restarts >= 1)
        await pool.stop()
    }

    @Test("a memory bomb (V8 heap, then ArrayBuffers) ends at memory_mb; the next request is served")
    func memoryLimit() async throws {
        var limits = EdgeLimits()
        limits.memoryMegabytes = 128
        limits.cpuHardMilliseconds = 60_000
        limits.cpuSoftMilliseconds = 60_000
        let pool = try pool(limits)
        try await pool.prewarm()
        for path in ["/heap", "/buffers"] {
            let (outcome, _) = await run(pool, path)
            guard case .failed(let failure) = outcome else {
                Issue.record("\(path): expected a failure, got \(outcome)")
                continue
            }
            #expect(failure.code == .memoryLimit, "\(path): \(failure)")
            #expect(failure.status == 547)
            await expectHealthy(pool)
        }
        await pool.stop()
    }

    @Test("a promise that never settles ends at wall_clock_seconds; the next request is served")
    func wallClockLimit() async throws {
        var limits = EdgeLimits()
        limits.wallClockSeconds = 1
        let pool = try pool(limits)
        let (outcome, _) = await run(pool, "/hang")
        guard case .failed(let failure) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(failure.code == .wallClockLimit)
        #expect(failure.status == 504)
        await expectHealthy(pool)
        await pool.stop()
    }

    @Test("a response over max_response_bytes: a clean failure below 64 KiB, an abort after the head beyond")
    func responseTooLarge() async throws {
        var limits = EdgeLimits()
        limits.maxResponseBytes = 10_000
        let small = try pool(limits)
        let (outcome, sink) = await run(small, "/big?n=20000")
        guard case .failed(let failure) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(failure.code == .responseTooLarge)
        #expect(sink.status == nil)
        let (fits, _) = await run(small, "/big?n=9000")
        #expect(fits == .completed(status: 200, bodyBytes: 9000))
        await small.stop()

        limits.maxResponseBytes = 200_000
        let large = try pool(limits)
        let (aborted, abortedSink) = await run(large, "/big?n=500000")
        guard case .aborted(let abortFailure) = aborted else {
            Issue.record("expected an abort, got \(aborted)")
            return
        }
        #expect(abortFailure.code == .responseTooLarge)
        #expect(abortedSink.status == 200)
        #expect(abortedSink.abortedWith?.code == .responseTooLarge)
        await expectHealthy(large)
        await large.stop()
    }

    @Test("a request body over max_request_bytes fails with request_too_large")
    func requestTooLarge() async throws {
        var limits = EdgeLimits()
        limits.maxRequestBytes = 1000
        let pool = try pool(limits)
        let request = InvocationRequest(requestID: "big-body", method: "POST", url: "http://localhost/probe/post", hasBody: true)
        let chunk = [UInt8](repeating: 65, count: 600)
        let outcome = await pool.invoke(request, body: Self.chunks([chunk, chunk, chunk]), response: CollectingSink())
        guard case .failed(let failure) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(failure.code == .requestTooLarge)
        #expect(failure.status == 413)
        await expectHealthy(pool)
        await pool.stop()
    }

    @Test("a thrown error is function_error with its message and stack")
    func functionError() async throws {
        let pool = try pool()
        let (outcome, _) = await run(pool, "/throw")
        guard case .failed(let failure) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(failure.code == .functionError)
        #expect(failure.status == 500)
        #expect(failure.message.contains("boom from the function"))
        #expect(failure.stack?.contains("index.ts") == true)
        let body = JSONValue.object(json: failure.json)
        #expect(body?["code"] == "function_error")
        await expectHealthy(pool)
        await pool.stop()
    }

    @Test("console.log reaches the log sink with the request's id")
    func logs() async throws {
        let logs = LogCollector()
        let pool = try pool(logs: logs)
        let (outcome, _) = await run(pool, "/log", id: "request-42")
        #expect(outcome == .completed(status: 200, bodyBytes: 6))
        // The LOG frame precedes the response's frames on the same stdout.
        let line = logs.lines.first { $0.message.contains("hello from /probe/log") }
        #expect(line?.requestID == "request-42")
        #expect(line?.level == "log")
        #expect(line?.function == "probe")
        await pool.stop()
    }

    @Test("a worker killed from outside is replaced; the next request is served")
    func externalKill() async throws {
        let pool = try pool()
        try await pool.prewarm()
        let directory = pool.launch.functionDirectory
        let pids = Self.workerProcesses(of: directory)
        #expect(pids.count == 1)
        // The RLIMIT_DATA backstop: memory_mb (256) + 1024 MB.
        for pid in pids {
            let limits = (try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)) ?? ""
            let line = limits.split(separator: "\n").first { $0.hasPrefix("Max data size") }.map(String.init) ?? ""
            #expect(line.contains("\((256 + 1024) << 20)"), "\(line)")
        }
        for pid in pids { kill(pid, SIGKILL) }
        // Whether the request lands before or after the pool noticed, it is served.
        try await Task.sleep(for: .milliseconds(200))
        await expectHealthy(pool)
        #expect(pool.stats.restarts == 1)
        await pool.stop()
    }

    @Test("a worker that exits mid-request fails it with worker_crashed; the next request is served")
    func crash() async throws {
        let logs = LogCollector()
        let pool = try pool(logs: logs)
        let (outcome, _) = await run(pool, "/exit", id: "exiting")
        guard case .failed(let failure) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(failure.code == .workerCrashed)
        #expect(failure.message.contains("exited with status 3"))
        #expect(logs.lines.contains { $0.requestID == "exiting" && $0.level == "error" })
        await expectHealthy(pool)
        await pool.stop()
    }

    @Test("cancelling the invoking task (client gone) cancels the request; the worker keeps serving")
    func cancellation() async throws {
        let pool = try pool()
        try await pool.prewarm()
        let hanging = Task { await run(pool, "/hang").0 }
        try await Task.sleep(for: .milliseconds(200))
        hanging.cancel()
        #expect(await hanging.value == .clientGone)
        #expect(pool.stats.inFlight == 0)
        await expectHealthy(pool)
        #expect(pool.stats.restarts == 0)
        await pool.stop()
    }

    @Test("the function sees its injected variables")
    func environment() async throws {
        let pool = try pool()
        let (outcome, sink) = await run(pool, "/env")
        #expect(outcome == .completed(status: 200, bodyBytes: 2))
        #expect(sink.text == "hi")
        await pool.stop()
    }

    @Test("stop() drains and leaves no process, not even a zombie")
    func stopLeavesNothing() async throws {
        var limits = EdgeLimits()
        limits.warmWorkers = 2
        let pool = try pool(limits)
        try await pool.prewarm()
        let directory = pool.launch.functionDirectory
        let pids = Self.workerProcesses(of: directory)
        #expect(pids.count == 2)
        let running = Task { await run(pool, "/slow") }
        try await Task.sleep(for: .milliseconds(10))
        await pool.stop()
        // The request in flight finished during the drain.
        #expect(await running.value.0 == .completed(status: 200, bodyBytes: 4))
        for pid in pids { #expect(!FileManager.default.fileExists(atPath: "/proc/\(pid)")) }
        #expect(Self.workerProcesses(of: directory).isEmpty)
        #expect(pool.stats.workers == 0)
        let (after, _) = await run(pool, "/")
        guard case .failed(let failure) = after else {
            Issue.record("expected worker_unavailable")
            return
        }
        #expect(failure.code == .workerUnavailable)
    }

    @Test("limits parse from function.json keys, refuse what is wrong, and write back")
    func limitsParsing() throws {
        let limits = try EdgeLimits.parse(["memory_mb": 512, "cpu_hard_ms": 3000, "max_queued": 0])
        #expect(limits.memoryMegabytes == 512)
        #expect(limits.cpuHardMilliseconds == 3000)
        #expect(limits.maxQueued == 0)
        #expect(try EdgeLimits.parse(limits.json) == limits)
        let overridden = try EdgeLimits.parse(["warm_workers": 2], over: limits)
        #expect(overridden.memoryMegabytes == 512 && overridden.warmWorkers == 2)

        #expect(throws: EdgeLimitsError.self) { try EdgeLimits.parse(["memory": 5]) }
        do {
            _ = try EdgeLimits.parse(["memory_mb": 8])
            Issue.record("expected a refusal")
        } catch {
            #expect(error.key == "memory_mb")
            #expect(error.message.contains("32") && error.message.contains("4096"))
        }
        do {
            _ = try EdgeLimits.parse(["cpu_soft_ms": 5000, "cpu_hard_ms": 1000])
            Issue.record("expected a refusal")
        } catch {
            #expect(error.key == "cpu_soft_ms")
        }
        #expect(throws: EdgeLimitsError.self) { try EdgeLimits.parse(["max_workers": "4"]) }
        #expect(throws: EdgeLimitsError.self) { try EdgeLimits.parse(["max_workers": 2.5]) }
    }

    @Test("the REQUEST frame's JSON holds hostile header values exactly")
    func requestHeadJSON() throws {
        let values = ["plain", "quote \" and \\ backslash", "tab\tnew\nline\u{1}", "üñî \u{2603} 𝄞", "'; DROP TABLE x; --", ""]
        let request = InvocationRequest(
            requestID: "req-\"1", method: "POST", url: "http://h/fn/a?b=\"c\"", headers: values.map { ("x-test", $0) }, hasBody: true)
        let parsed = try #require(JSONValue.object(json: FunctionPool.requestHead(request)))
        #expect(parsed["method"]?.stringValue == "POST")
        #expect(parsed["url"]?.stringValue == "http://h/fn/a?b=\"c\"")
        #expect(parsed["request_id"]?.stringValue == "req-\"1")
        #expect(parsed["body"]?.boolValue == true)
        let headers = try #require(parsed["headers"]?.arrayValue)
        #expect(headers.compactMap { $0.arrayValue?.last?.stringValue } == values)
        let empty = InvocationRequest(requestID: "r", method: "GET", url: "http://h/fn")
        #expect(JSONValue.object(json: FunctionPool.requestHead(empty))?["headers"]?.arrayValue?.isEmpty == true)
    }

    @Test("the command line and environment of a worker")
    func commandLine() {
        let launch = WorkerLaunch(
            denoPath: "/deno", runnerPath: "/r/runner.js", functionDirectory: "/f", entryPath: "/f/index.ts", denoDirectory: "/cache",
            allowNet: ["api.example.com", "db:5432"], environment: ["B": "2", "A": "1"])
        #expect(
            launch.arguments == [
                "run", "--no-prompt", "--no-config", "--no-remote", "--no-npm", "--allow-read=/f", "--allow-net=api.example.com,db:5432", "--allow-env=A,B",
                "--v8-flags=--max-old-space-size=256", "/r/runner.js", "/f/index.ts",
            ])
        #expect(launch.processEnvironment == ["A": "1", "B": "2", "DENO_DIR": "/cache", "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1"])
    }
}

/// Hands out a list's elements one per call, then nil.
final class Counter: Sendable {
    private let index = Mutex(0)

    func take(_ items: [[UInt8]]) -> [UInt8]? {
        index.withLock { index in
            defer { index += 1 }
            return index < items.count ? items[index] : nil
        }
    }
}

/// Every log line of a pool.
final class LogCollector: Sendable {
    private let stored = Mutex<[FunctionLogLine]>([])

    func append(_ line: FunctionLogLine) { stored.withLock { $0.append(line) } }
    var lines: [FunctionLogLine] { stored.withLock { $0 } }
}

/// A response sink that records what it was given.
final class CollectingSink: ResponseSink {
    private struct Recorded {
        var status: Int?
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        var ended = false
        var aborted: EdgeFailure?
    }

    private let recorded = Mutex(Recorded())

    func head(status: Int, headers: [(String, String)]) async {
        recorded.withLock {
            $0.status = status
            $0.headers = headers
        }
    }

    func write(_ chunk: [UInt8]) async -> Bool {
        recorded.withLock { $0.body += chunk }
        return true
    }

    func end() async { recorded.withLock { $0.ended = true } }
    func abort(_ failure: EdgeFailure) async { recorded.withLock { $0.aborted = failure } }

    var status: Int? { recorded.withLock { $0.status } }
    var headers: [(String, String)] { recorded.withLock { $0.headers } }
    var body: [UInt8] { recorded.withLock { $0.body } }
    var text: String { String(decoding: body, as: UTF8.self) }
    var ended: Bool { recorded.withLock { $0.ended } }
    var abortedWith: EdgeFailure? { recorded.withLock { $0.aborted } }
}

@Suite("The runner's RESPONSE_HEAD read by the host")
struct ResponseHeadParserTests {
    @Test("escapes, odd Unicode and repeated headers read exactly as the general JSON reader reads them")
    func matchesTheGeneralReader() throws {
        let samples = [
            #"{"status":200,"headers":[]}"#,
            #"{"status":404,"headers":[["content-type","text/plain;charset=UTF-8"],["x-a","\"quoted\" \\ \/ \b\f\n\r\t"]]}"#,
            #"{"status":201,"headers":[["x-u","\u00e9\u2603 \ud834\udd1e 𝄞 é"],["set-cookie","a=1"],["set-cookie","b=2"]]}"#,
            #"{ "headers" : [ ["a", "b"] ], "status" : 204 }"#,
        ]
        for sample in samples {
            let parsed = try #require(ResponseHeadParser.parse(Array(sample.utf8)))
            let object = try #require(JSONValue.object(json: Array(sample.utf8)))
            #expect(parsed.status == object["status"]?.intValue)
            let general = (object["headers"]?.arrayValue ?? []).compactMap { pair -> String? in
                guard let pair = pair.arrayValue, pair.count == 2, let name = pair[0].stringValue, let value = pair[1].stringValue else { return nil }
                return name + "\u{0}" + value
            }
            #expect(parsed.headers.map { $0.0 + "\u{0}" + $0.1 } == general)
        }
    }

    @Test("malformed heads, statuses out of range and headers that are not pairs are refused")
    func refusesMalformedHeads() {
        for sample in [
            #"{"status":200,"headers":[["a"]]}"#, #"{"status":200,"headers":[["a","\x"]]}"#, #"{"status":200,"headers":[["a","\ud834"]]}"#,
            #"{"status":,"headers":[]}"#, #"{"status":200,"headers":[]}x"#, "", #"{"status":9999999,"headers":[]}"#, #"{"status":99,"headers":[]}"#,
            "{\"status\":200,\"headers\":[[\"a\",\"\u{1}\"]]}", #"{"status":200,"headers":[["a",1]]}"#, #"{"headers":[]}"#,
        ] {
            #expect(ResponseHeadParser.parse(Array(sample.utf8)) == nil, "\(sample)")
        }
    }
}
