import AsyncHTTPClient
import Foundation
import MeltyPluginABI
import NIOCore
import Testing

@testable import Kernel

/// The standard test configuration: both example plugins, portal `demo` with both,
/// portal `conly` with only the C plugin.
let examplePluginsTOML = """
    [plugins.echo-c]
    path = "{ECHO_C}"
    [plugins.echo-swift]
    path = "{ECHO_SWIFT}"
    [plugins.echo-swift.config]
    greeting = "hi from swift"
    [portals.demo]
    plugins = ["echo-c", "echo-swift"]
    [portals.conly]
    plugins = ["echo-c"]
    """

@Suite("Gateway, portals and plugin dispatch", .serialized, .timeLimit(.minutes(3)))
struct GatewayTests {
    @Test("the system pulse answers exactly the seed's keys")
    func status() async throws {
        let kernel = try await TestKernel.start("")
        defer { Task { await kernel.stop() } }
        let response = try await kernel.request("/v1/system/status")
        #expect(response.status == 200)
        let json = HTTP.json(response.body)
        #expect(Set(json.keys) == ["is_initialized", "version", "pulse"])
        #expect(json["is_initialized"] as? Bool == false)
        #expect(json["pulse"] as? String == "active")
        #expect((json["version"] as? String)?.split(separator: ".").count == 3)
        #expect(response.headers.first(name: "x-request-id")?.isEmpty == false)
        await kernel.stop()
    }

    @Test("requests reach the portal's instance of the C and the Swift plugin")
    func dispatch() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let echo = try await kernel.request("/p/demo/echo-c/echo", method: .POST, body: "ping")
        #expect(echo.status == 200 && echo.body == "ping")
        let whoami = HTTP.json(try await kernel.request("/p/demo/echo-c/whoami", headers: [("x-request-id", "abc-123")]).body)
        #expect(whoami["portal"] as? String == "demo")
        #expect(whoami["request_id"] as? String == "abc-123")
        #expect(whoami["remote"] as? String == "127.0.0.1")
        let swift = try await kernel.request("/p/demo/echo-swift/echo")
        #expect(swift.status == 200 && swift.body == "hi from swift")
        let conly = HTTP.json(try await kernel.request("/p/conly/echo-c/async?delay_ms=3").body)
        #expect(conly["portal"] as? String == "conly")
        let notFound = try await kernel.request("/p/demo/echo-c/nope")
        #expect(notFound.status == 404 && HTTP.json(notFound.body)["code"] as? String == "not_found")
        await kernel.stop()
    }

    @Test("pipelined requests mixing direct routes, a plugin answering later and router routes are answered in order")
    func pipelinedOrder() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let port = Int(kernel.url.split(separator: ":").last ?? "") ?? 0
        // async (direct, answered later), status (direct), metrics (router), echo (direct), close.
        let text = try await Task.detached {
            try rawExchange(
                port: port,
                request: "GET /p/demo/echo-c/async?delay_ms=100 HTTP/1.1\r\nHost: x\r\n\r\n"
                    + "GET /v1/system/status HTTP/1.1\r\nHost: x\r\n\r\n"
                    + "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                    + "POST /p/demo/echo-c/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlast")
        }.value
        let starts = text.components(separatedBy: "HTTP/1.1 200 OK").count - 1
        #expect(starts == 4, "\(text.prefix(400))")
        let order = ["\"async\":true", "\"pulse\"", "meltybase_http_requests_total", "\r\n\r\nlast"].map { text.range(of: $0)?.lowerBound }
        #expect(order.allSatisfy { $0 != nil } && zip(order, order.dropFirst()).allSatisfy { $0! < $1! }, "\(text.prefix(400))")
        // The client shuts its side while the plugin has not answered yet: the answer still comes.
        let halfClosed = try await Task.detached {
            try rawExchange(port: port, request: "GET /p/demo/echo-c/async?delay_ms=100 HTTP/1.1\r\nHost: x\r\n\r\n", shutWrite: true)
        }.value
        #expect(halfClosed.hasPrefix("HTTP/1.1 200 OK"), "\(halfClosed.prefix(200))")
        await kernel.stop()
    }

    @Test("missing portal, unknown prefix and a plugin the portal has not enabled are 404s that say so")
    func notFoundMessages() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let portal = HTTP.json(try await kernel.request("/p/ghost/echo-c/echo").body)
        #expect(portal["code"] as? String == "portal_not_found")
        #expect((portal["message"] as? String)?.contains("ghost") == true)
        let prefix = try await kernel.request("/p/demo/vault/v1/secrets")
        #expect(prefix.status == 404 && HTTP.json(prefix.body)["code"] as? String == "plugin_not_found")
        let disabled = try await kernel.request("/p/conly/echo-swift/echo")
        #expect(disabled.status == 404)
        let json = HTTP.json(disabled.body)
        #expect(json["code"] as? String == "plugin_not_enabled")
        #expect(json["message"] as? String == "plugin \"echo-swift\" is not enabled for portal \"conly\"")
        #expect((json["hint"] as? String)?.contains("meltybase portal enable conly echo-swift") == true)
        let unknown = try await kernel.request("/definitely/not/here")
        #expect(unknown.status == 404 && HTTP.json(unknown.body)["code"] as? String == "route_not_found")
        await kernel.stop()
    }

    @Test("1,000 concurrent asynchronous requests complete from the plugin's worker threads")
    func thousandAsyncRequests() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let configuration = HTTPClient.Configuration(connectionPool: .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 200))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<1000 {
                group.addTask {
                    let portal = index % 2 == 0 ? "demo" : "conly"
                    let response = try await HTTP.request(kernel.url + "/p/\(portal)/echo-c/async?delay_ms=\(index % 20)", client: client)
                    #expect(HTTP.json(response.body)["portal"] as? String == portal)
                    return (response.status, portal)
                }
            }
            var collected: [(Int, String)] = []
            for try await result in group { collected.append(result) }
            return collected
        }
        try await client.shutdown()
        #expect(results.count == 1000)
        #expect(results.allSatisfy { $0.0 == 200 })
        #expect(kernel.kernel.pendingPluginRequests == 0)
        await kernel.stop()
    }

    @Test("enabling and disabling a plugin with the portal store takes effect without a restart")
    func livePortalChanges() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let store = PortalStore(database: SystemDatabase(conninfo: kernel.conninfo), config: kernel.kernel.config)
        try await store.create("live", plugins: [])
        try await store.set(portal: "live", plugin: "echo-swift", enabled: true)
        try await eventually { try await kernel.request("/p/live/echo-swift/echo").status == 200 }
        try await store.set(portal: "live", plugin: "echo-swift", enabled: false)
        try await eventually { try await kernel.request("/p/live/echo-swift/echo").status == 404 }
        await #expect(throws: PortalStore.Refusal.self) { try await store.create("live", plugins: []) }
        await #expect(throws: PortalStore.Refusal.self) { try await store.set(portal: "live", plugin: "nope", enabled: true) }
        await #expect(throws: PortalStore.Refusal.self) { try await store.create("Bad Name", plugins: []) }
        await kernel.stop()
    }

    @Test("services are looked up per portal and refused where the exporter is not enabled")
    func serviceRegistry() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        let found = HTTP.json(try await kernel.request("/p/demo/echo-c/lookup-echo-service").body)
        #expect(found["found"] as? Bool == true)
        let refused = HTTP.json(try await kernel.request("/p/conly/echo-c/lookup-echo-service").body)
        #expect(refused["found"] as? Bool == false)
        #expect(refused["status"] as? Int == 3)  // MB_ERR_REFUSED
        #expect((refused["message"] as? String)?.contains("not enabled for portal \"conly\"") == true)
        let call = HTTP.json(try await kernel.request("/p/demo/echo-swift/call?text=abc").body)
        #expect(call["text"] as? String == "cba" && call["portal"] as? String == "demo")
        // A binding holds a use of the exporter's instance (service_lookup's lease): an
        // instance disabled meanwhile outlives the lease instead of being freed under the caller.
        let portal = try #require(kernel.kernel.runningPortals?.portal("demo"))
        let instance = try #require(portal.instances.withLockedValue { $0["echo-swift"] })
        let uses = instance.useCount
        var binding = mb_service_binding()
        let status = "echo".withCString { portal.handle.context.table.pointer.pointee.service_lookup(portal.handle.opaque, $0, 4, 1, &binding, mb_host_error_buffer()) }
        #expect(status == MB_OK)
        #expect(instance.useCount == uses + 1)
        instance.retire()
        try await Task.sleep(for: .seconds(PluginInstance.destroyGracePeriod + 1))
        #expect(!instance.isDestroyed, "the instance was destroyed while a service binding was leased")
        let missing = try await kernel.request("/p/demo/echo-swift/call?service=nothing")
        #expect(missing.status == 404)
        await kernel.stop()
    }

    @Test("outbound HTTP goes through the host and its egress policy: loopback only when listed")
    func egress() async throws {
        let refusing = try await TestKernel.start(examplePluginsTOML)
        let refused = try await refusing.request("/p/demo/echo-swift/fetch?url=\(refusing.url)/v1/system/status")
        #expect(refused.status == 403, "\(refused.body)")
        #expect((HTTP.json(refused.body)["message"] as? String)?.contains("egress_hosts") == true, "\(refused.body)")
        await refusing.stop()

        let listed = examplePluginsTOML.replacingOccurrences(of: "path = \"{ECHO_SWIFT}\"", with: "path = \"{ECHO_SWIFT}\"\negress_hosts = [\"127.0.0.1\"]")
        let kernel = try await TestKernel.start(listed)
        let fetched = HTTP.json(try await kernel.request("/p/demo/echo-swift/fetch?url=\(kernel.url)/v1/system/status").body)
        #expect(fetched["status"] as? Int == 200)
        #expect((fetched["body"] as? String)?.contains("\"pulse\":\"active\"") == true)
        let otherHost = try await kernel.request("/p/demo/echo-swift/fetch?url=http://10.1.2.3/")
        #expect(otherHost.status == 403, "\(otherHost.body)")
        let bad = try await kernel.request("/p/demo/echo-swift/fetch?url=file:///etc/passwd")
        #expect(bad.status == 502)
        #expect(HTTP.json(bad.body)["message"].map { "\($0)" }?.contains("not an absolute http") == true)
        await kernel.stop()
    }

    @Test("egress policy: private, loopback, link-local and mapped addresses are not public; lists match hosts and ports")
    func egressPolicy() {
        for address in [
            "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
            "255.255.255.255", "::1", "::", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "ff02::1", "not-an-ip",
        ] {
            #expect(!EgressPolicy.isPublic(address: address), "\(address)")
        }
        for address in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "172.32.0.1", "100.128.0.1"] {
            #expect(EgressPolicy.isPublic(address: address), "\(address)")
        }
        var policy = EgressPolicy()
        policy.pluginHosts["p"] = ["api.example.com", "*.example.org", "10.0.0.5:8080"].compactMap(EgressPolicy.HostPattern.init)
        #expect(policy.decide(plugin: "p", portal: nil, host: "api.example.com", port: 443) == .listed)
        #expect(policy.decide(plugin: "p", portal: nil, host: "x.example.org", port: 80) == .listed)
        #expect(policy.decide(plugin: "p", portal: nil, host: "example.org", port: 80) != .listed)
        #expect(policy.decide(plugin: "p", portal: nil, host: "10.0.0.5", port: 8080) == .listed)
        #expect(policy.decide(plugin: "p", portal: nil, host: "10.0.0.5", port: 8081) != .listed)
        #expect(policy.decide(plugin: "other", portal: nil, host: "api.example.com", port: 443) == .publicOnly)
        policy.portalHosts["shop"] = ["api.example.com"].compactMap(EgressPolicy.HostPattern.init)
        #expect(policy.decide(plugin: "other", portal: "shop", host: "evil.example", port: 443) != .publicOnly)
        for bad in ["", "*", "a*b.com", "host:99999", "spa ce", "[::1"] { #expect(EgressPolicy.HostPattern(bad) == nil, "\(bad)") }
    }

    @Test("bad input gets a JSON 4xx, never a 5xx: huge body, odd methods, encoded paths")
    func badInput() async throws {
        let kernel = try await TestKernel.start("[kernel]\nbody_limit_bytes = 4096\n" + examplePluginsTOML)
        let huge = try await kernel.request("/p/demo/echo-c/echo", method: .POST, body: String(repeating: "x", count: 10_000))
        #expect(huge.status == 413)
        #expect(HTTP.json(huge.body)["code"] as? String == "body_too_large")
        let echoHuge = try await kernel.request("/v1/system/echo", method: .POST, body: String(repeating: "x", count: 10_000))
        #expect(echoHuge.status == 413)
        for path in [
            "/p/", "/p//echo-c/echo", "/p/demo/", "/p/demo//echo", "/p/%00/echo-c/echo", "/p/demo/echo-c/%ff%fe", "/p/demo/echo-c/../../v1/system/status", "/metrics/../p",
        ] {
            let response = try await kernel.request(path)
            #expect((400..<500).contains(response.status) || response.status == 200, "\(path) gave \(response.status)")
            if response.status >= 400 { #expect(HTTP.json(response.body)["code"] != nil, "\(path) body \(response.body)") }
        }
        let delete = try await kernel.request("/p/demo/echo-c/echo", method: .DELETE)
        #expect(delete.status == 404)
        let badDelay = try await kernel.request("/p/demo/echo-c/async?delay_ms=abc")
        #expect(badDelay.status == 400)
        let status = try await kernel.request("/v1/system/status")
        #expect(status.status == 200)
        await kernel.stop()
    }

    @Test("a plugin that answers too late gets the client a 504, and its late answer is dropped")
    func pluginTimeout() async throws {
        let kernel = try await TestKernel.start("[kernel]\nrequest_timeout_seconds = 0.3\n" + examplePluginsTOML)
        let slow = try await kernel.request("/p/demo/echo-c/async?delay_ms=1000")
        #expect(slow.status == 504)
        #expect(HTTP.json(slow.body)["code"] as? String == "plugin_timeout")
        try await Task.sleep(for: .milliseconds(900))
        #expect(try await kernel.request("/p/demo/echo-c/async?delay_ms=5").status == 200)
        await kernel.stop()
    }

    @Test("Prometheus metrics expose request counters and plugin counters")
    func metrics() async throws {
        let kernel = try await TestKernel.start(examplePluginsTOML)
        _ = try await kernel.request("/p/demo/echo-c/count")
        let metrics = try await kernel.request("/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("meltybase_http_requests_total"))
        #expect(metrics.body.contains("meltybase_plugin_echo_count_total{plugin=\"echo-c\",portal=\"demo\"}"))
        #expect(metrics.body.contains("meltybase_rate_limit_fallback"))
        await kernel.stop()
    }

    @Test("a kernel with broken plugins keeps serving and reports each refusal")
    func brokenPluginsKeepServing() async throws {
        let kernel = try await TestKernel.start(
            """
            [plugins.broken-wrong-major]
            path = "{BROKEN:wrong_major}"
            [plugins.broken-init-fails]
            path = "{BROKEN:init_fails}"
            [plugins.echo-c]
            path = "{ECHO_C}"
            [portals.demo]
            plugins = ["echo-c", "broken-init-fails"]
            """)
        #expect(try await kernel.request("/v1/system/status").status == 200)
        #expect(try await kernel.request("/p/demo/echo-c/echo").body == "echo")
        let report = HTTP.json(try await kernel.request("/v1/system/plugins").body)
        let plugins = report["plugins"] as? [[String: Any]] ?? []
        #expect(plugins.filter { $0["status"] as? String == "failed" }.count == 2)
        #expect(kernel.log.all.filter { $0.hasPrefix("error") && $0.contains("not loaded") }.count == 2)
        await kernel.stop()
    }
}

/// Retries `condition` for up to `seconds`.
func eventually(seconds: Double = 10, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestFailure("condition not met within \(seconds) s")
}

/// Sends `request` on a new loopback connection and reads until the server closes it (5 s at most).
func rawExchange(port: Int, request: String, shutWrite: Bool = false) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let bytes = Array(request.utf8)
    guard send(fd, bytes, bytes.count, 0) == bytes.count else { throw POSIXError(.EIO) }
    if shutWrite { shutdown(fd, Int32(SHUT_WR)) }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        received += buffer[0..<count]
    }
    return String(decoding: received, as: UTF8.self)
}
