import Foundation
import Logging
import MeltyPasswords
import MeltyPluginABI
import NIOConcurrencyHelpers
import NIOPosix
import Testing

@testable import Kernel

/// Per-kernel host state (no process-wide tables) and where blocking plugin work runs.
@Suite("Host context: per-kernel state, async audit, blocking work off the executor", .serialized, .timeLimit(.minutes(3)))
struct HostContextTests {
    @Test("two kernels in one process keep separate pending-request tables and WebSocket connections")
    func separateKernels() async throws {
        let first = HostContext(logger: Logger(label: "first"))
        let second = HostContext(logger: Logger(label: "second"))
        // Checked from inside the dispatch, while the token is pending: no task has to be scheduled.
        let seen = NIOLockedValueBox<(token: UInt64, firstCount: Int, secondCount: Int, secondCompleted: Bool, status: mb_status)>((0, 0, 0, true, MB_ERR_INTERNAL))
        let answer = await first.pending.run(plugin: "p", timeout: 10) { issued in
            let firstCount = first.pending.count
            let secondCount = second.pending.count
            let secondCompleted = second.pending.complete(issued, with: PluginResponse(status: 200, headers: [], body: []))
            // The C respond finds the issuing kernel by the slot in the token, whichever table the plugin holds.
            let status = second.table.pointer.pointee.respond(issued, 201, nil, 0, mb_plugin_bytes(data: nil, len: 0))
            seen.withLockedValue { $0 = (issued, firstCount, secondCount, secondCompleted, status) }
        }
        let observed = seen.withLockedValue { $0 }
        let issued = observed.token
        #expect(observed.firstCount == 1)
        #expect(observed.secondCount == 0, "the second kernel sees the first one's request")
        #expect(!observed.secondCompleted, "the second kernel completed a token it never issued")
        #expect(observed.status == MB_OK)
        #expect(answer.status == 201)
        #expect(first.pending.count == 0)

        let inFirst = first.webSockets.open()
        let inSecond = second.webSockets.open()
        #expect(inFirst != inSecond)
        let sent = [UInt8]("hi".utf8).withUnsafeBufferPointer { first.table.pointer.pointee.ws_send(inSecond, 1, mb_plugin_bytes(data: $0.baseAddress, len: $0.count)) }
        #expect(sent == MB_OK)
        #expect(second.webSockets.queued(inSecond)?.frames == 1)
        #expect(first.webSockets.queued(inFirst)?.frames == 0)
        #expect(first.webSockets.count == 1 && second.webSockets.count == 1)
        await first.close()
        await second.close()
        // A closed kernel's tokens are unknown, not another kernel's.
        #expect(first.table.pointer.pointee.respond(issued + 1, 200, nil, 0, mb_plugin_bytes(data: nil, len: 0)) == MB_ERR_NOT_FOUND)
    }

    @Test("a status outside 100-599 is answered 502 and logged, both naming the plugin")
    func invalidStatusNamesThePlugin() async throws {
        let log = CapturedLog()
        let context = HostContext(logger: Logger(label: "invalid-status") { _ in log.handler() })
        let status = NIOLockedValueBox(MB_OK)
        let answer = await context.pending.run(plugin: "hello", timeout: 10) { issued in
            let returned = context.table.pointer.pointee.respond(issued, 700, nil, 0, mb_plugin_bytes(data: nil, len: 0))
            status.withLockedValue { $0 = returned }
        }
        #expect(status.withLockedValue { $0 } == MB_ERR_INVALID_ARGUMENT)
        #expect(answer.status == 502)
        #expect(String(decoding: answer.body, as: UTF8.self).contains(#"plugin \"hello\" answered with the invalid HTTP status 700"#))
        let warnings = log.all.filter { $0.hasPrefix("warning") && $0.contains("invalid HTTP status") }
        #expect(warnings.count == 1 && warnings.first?.contains("plugin=hello") == true && warnings.first?.contains("status=700") == true, "\(log.all)")
        await context.close()
    }

    @Test("two running kernels share the plugin libraries but not their state: each sees its own pending requests and the exports")
    func twoRunningKernels() async throws {
        let first = try await TestKernel.start(examplePluginsTOML)
        let second = try await TestKernel.start(examplePluginsTOML)
        // The second kernel reuses the libraries the first initialised and adopts their
        // service exports into its own registry: echo.v1 is found there too.
        let call = HTTP.json(try await second.request("/p/demo/echo-swift/call?text=abc").body)
        #expect(call["text"] as? String == "cba", "\(call)")
        let slow = Task { try await first.request("/p/demo/echo-c/async?delay_ms=1000") }
        try await eventually(seconds: 60) { first.kernel.pendingPluginRequests == 1 }
        #expect(second.kernel.pendingPluginRequests == 0, "the second kernel counts the first one's request")
        #expect(try await slow.value.status == 200)
        #expect(first.kernel.pendingPluginRequests == 0)
        let contexts = try (#require(first.kernel.runningHostContext), #require(second.kernel.runningHostContext))
        #expect(contexts.0 !== contexts.1 && contexts.0.pending !== contexts.1.pending && contexts.0.webSockets !== contexts.1.webSockets)
        await first.stop()
        // The first kernel is gone; the second one still serves the shared libraries.
        #expect(try await second.request("/p/demo/echo-c/echo").status == 200)
        await second.stop()
    }

    @Test("audit_async: the completion fires once the entry is committed (C and Swift SDK), bad details are refused at once")
    func asyncAudit() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let fromC = try await kernel.request("/p/demo/echo-c/audit", method: .POST, body: #"{"n": 1}"#)
        #expect(fromC.status == 200 && fromC.body.contains(#""audited":true"#), "\(fromC)")
        let fromSwift = try await kernel.request("/p/demo/echo-swift/audit", method: .POST, body: #"{"n": 2}"#)
        #expect(fromSwift.status == 200, "\(fromSwift)")
        let refused = try await kernel.request("/p/demo/echo-c/audit", method: .POST, body: "[1]")
        #expect(refused.status == 400 && refused.body.contains("details must be a JSON object"), "\(refused)")
        // The completion came after the commit: both entries are there now.
        let database = SystemDatabase(conninfo: kernel.conninfo)
        defer { database.close() }
        let stored = try await database.withConnection { connection in
            try await connection.query(
                "SELECT actor, details->>'n' AS n FROM meltybase.audit_log WHERE action = 'echo.audit' ORDER BY details->>'n'"
            ).rows
        }
        #expect(stored.map { $0[0] ?? "" } == ["plugin:echo-c", "plugin:echo-swift"])
        #expect(stored.map { $0[1] ?? "" } == ["1", "2"])
        await kernel.stop()
    }

    @Test("init and a slow instance_create run on the blocking pool: other requests are answered meanwhile")
    func slowInstanceCreate() async throws {
        let kernel = try await TestKernel.start(
            examplePluginsTOML + """

                [plugins.slow-create]
                path = "{BROKEN:slow_create}"
                """)
        let registry = try #require(kernel.kernel.runningPortals)
        let store = PortalStore(database: SystemDatabase(conninfo: kernel.conninfo), config: kernel.kernel.config)
        // More concurrent reloads than the async executor has threads: before, each one
        // blocked an executor thread (in instance_create or on the reload lock) for seconds.
        let portals = (0...ProcessInfo.processInfo.activeProcessorCount).map { "slow\($0)" }
        for portal in portals { try await store.create(portal, plugins: ["slow-create"]) }
        let reloads = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in portals { group.addTask { try? await registry.reload() } }
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        let started = Date()
        let echo = try await kernel.request("/p/demo/echo-c/echo")
        let waited = Date().timeIntervalSince(started)
        #expect(echo.status == 200)
        #expect(waited < 2.5, "a request waited \(waited) s behind instance_create")
        await reloads.value
        try await eventually(seconds: 30) { try await kernel.request("/p/\(portals[0])/slow-create/x").status == 200 }
        // The fixture reports the threads its init and instance_create ran on: the kernel's
        // NIOThreadPool ("TP-#n"), not the async executor or an event loop.
        let threads = HTTP.json(try await kernel.request("/p/\(portals[0])/slow-create/x").body)
        #expect((threads["init"] as? String)?.hasPrefix("TP-#") == true, "init ran on \(threads["init"] ?? "?")")
        #expect((threads["create"] as? String)?.hasPrefix("TP-#") == true, "instance_create ran on \(threads["create"] ?? "?")")
        await kernel.stop()
    }

    @Test("Argon2id hashing and verification queue on the given bounded pool, not on threads of their own")
    func argon2OnBoundedPool() async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let release = DispatchSemaphore(value: 0)
        let occupied = DispatchSemaphore(value: 0)
        let blocker = Task {
            try await pool.runIfActive {
                occupied.signal()
                release.wait()
            }
        }
        // Only once the pool's one thread is taken (on a loaded machine the blocker's task may
        // start after the hashing task, which then rightly ran first).
        while occupied.wait(timeout: .now()) == .timedOut { try await Task.sleep(for: .milliseconds(5)) }
        let hashed = NIOLockedValueBox<String?>(nil)
        let hashing = Task {
            let hash = try await PasswordHasher().hash("correct horse battery staple", on: pool)
            hashed.withLockedValue { $0 = hash }
            return hash
        }
        // The pool's only thread is busy: the hash waits for it instead of running elsewhere.
        try await Task.sleep(for: .milliseconds(500))
        #expect(hashed.withLockedValue { $0 } == nil, "Argon2id ran outside the bounded pool")
        release.signal()
        try await blocker.value
        let hash = try await hashing.value
        #expect(hash.hasPrefix("$argon2id$"))
        #expect(await AdminIdentity.verifyPassword("correct horse battery staple", against: hash, on: pool))
        #expect(!(await AdminIdentity.verifyPassword("wrong", against: nil, on: pool)))
        try await pool.shutdownGracefully()
    }
}
