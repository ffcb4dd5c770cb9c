// bench-realtime: the WebSocket load generator of Benchmarks/realtime.sh (shared
// design: performance.md). Holds tens of thousands of Phoenix (Supabase Realtime,
// vsn=1.0.0) sockets on one event loop group, each a bare NIO pipeline (HTTP upgrade,
// then the WebSocket frame codec and one small handler; no Task per connection), bound
// to source addresses spread over 127.0.0.0/8 so the ephemeral ports of one address do
// not cap the count. Every mode is bounded by --seconds and ends with one line
// `RESULT mode=... key=value ...` that the script reads.
//
//   idle       open and join N sockets, hold them, report how many stayed open; with
//              --server-pid, the server's VmRSS before and after (KB per connection)
//   broadcast  N subscribers on one channel, one publisher (WebSocket, or the HTTP
//              broadcast API) sending M messages at R/s; deliveries, msg/s, latency
//   changes    N subscribers of postgres_changes on one table, each with its own JWT;
//              prints READY, then counts deliveries (rows carry clock_timestamp() µs)
//   redis      the broadcast peer: N Redis SUBSCRIBE connections, one PUBLISHer, same
//              payloads, rate and latency clock
//   pg-listen  the changes peer: LISTEN connections; NOTIFY payloads carry clock µs
import ArgumentParser
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

struct Common: ParsableArguments {
    @Option(help: "Event loop threads.") var threads = 2
    @Option(help: "Hard cap on the run, in seconds (every mode exits by then).") var seconds = 120.0
    @Option(name: .customLong("connect-rate"), help: "New connections per second at most.") var connectRate = 5000
    @Option(help: "Connections opened but not yet joined or failed, at most.") var inflight = 1000
    @Option(name: .customLong("source-addresses"), help: "Source addresses to rotate over (127.1.0.1, ...); 0: one per 20,000 connections, at least 4.")
    var sourceAddresses = 0
    @Option(help: "RLIMIT_NOFILE to ask for (the hard limit is raised when run as root).") var nofile = 1_048_576
}

/// ws://host:port/path?query, split.
func parseURL(_ url: String) throws -> (host: String, port: Int, path: String) {
    var rest = Substring(url)
    for scheme in ["ws://", "http://"] where rest.hasPrefix(scheme) { rest = rest.dropFirst(scheme.count) }
    let slash = rest.firstIndex(of: "/") ?? rest.endIndex
    let authority = rest[..<slash]
    let path = slash < rest.endIndex ? String(rest[slash...]) : "/"
    let parts = authority.split(separator: ":")
    guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("URL needs host:port: \(url)") }
    return (String(parts[0]), port, path)
}

/// Sets up limits, loops and source addresses for `connections` sockets.
func prepare(_ common: Common, connections: Int) throws -> (Loops, SourceAddresses, UInt64) {
    let deadline = monotonicNanoseconds() + UInt64(common.seconds * 1e9)
    let fds = raiseFileLimit(wanted: common.nofile)
    say("INFO nofile=\(fds)")
    if fds < connections + 100 { warn("RLIMIT_NOFILE is \(fds): fewer than the \(connections) sockets asked for") }
    let count = common.sourceAddresses > 0 ? common.sourceAddresses : max(4, connections / 20000 + 1)
    return (Loops(threads: common.threads), try SourceAddresses(count: count), deadline)
}

func describe(_ c: Counters) -> String {
    "started=\(c.started) connected=\(c.connected) joined=\(c.joined) join_errors=\(c.joinErrors) failed=\(c.failed) closed_after_join=\(c.closedAfterJoin)"
}

func reportError(_ c: Counters) {
    if let error = c.firstError { say("INFO first_error=\(error.split(separator: "\n").joined(separator: " "))") }
}

/// The payload of one broadcast: the send time (monotonic ns) under "mbt", a sequence
/// number and optional padding.
func broadcastPayload(seq: Int, pad: String) -> String {
    #"{"mbt":\#(monotonicNanoseconds()),"seq":\#(seq)\#(pad)}"#
}

/// Sends `messages` at `rate` per second through `send` (called from this task with a
/// batch of sequence numbers); returns when all are sent or at the deadline.
func pace(messages: Int, rate: Double, deadline: UInt64, send: (Range<Int>) -> Void) async -> (sent: Int, startNs: UInt64, endNs: UInt64) {
    let start = monotonicNanoseconds()
    var sent = 0
    while sent < messages && monotonicNanoseconds() < deadline {
        let elapsed = Double(monotonicNanoseconds() - start) / 1e9
        let due = min(messages, rate > 0 ? Int(rate * elapsed) + 1 : messages)
        if due > sent {
            send(sent..<due)
            sent = due
        }
        try? await Task.sleep(nanoseconds: 1_000_000)
    }
    return (sent, start, monotonicNanoseconds())
}

/// Waits until `expected` deliveries arrived, or nothing arrived for `drain` seconds, or the deadline.
func waitForDeliveries(loops: Loops, expected: UInt64, drain: Double, deadline: UInt64) async throws -> Counters {
    var counters = try await loops.counters()
    var last = counters.deliveries
    var lastChange = monotonicNanoseconds()
    while monotonicNanoseconds() < deadline {
        counters = try await loops.counters()
        if counters.deliveries >= expected { break }
        if counters.deliveries != last {
            last = counters.deliveries
            lastChange = monotonicNanoseconds()
        } else if Double(monotonicNanoseconds() - lastChange) / 1e9 > drain {
            break
        }
        try await Task.sleep(nanoseconds: 20_000_000)
    }
    return try await loops.counters()
}

/// The delivery figures of a run: count, rate over [start, last delivery], latency.
func deliveryFields(_ c: Counters, expected: UInt64, startNs: UInt64, histogram: Histogram) -> String {
    let span = c.lastDeliveryNs > startNs ? Double(c.lastDeliveryNs - startNs) / 1e9 : 0
    let rate = span > 0 ? Double(c.deliveries) / span : 0
    let a = "deliveries=\(c.deliveries) expected=\(expected) unparsed=\(c.unparsed) span_s=\(fixed(3, span))"
    let b = "msg_per_s=\(Int(rate)) p50_ms=\(formatMs(histogram.quantile(0.5))) p99_ms=\(formatMs(histogram.quantile(0.99)))"
    let maxMs = formatMs(histogram.total > 0 ? histogram.max : nil)
    return "\(a) \(b) max_ms=\(maxMs)"
}

@main
struct BenchRealtime: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-realtime",
        abstract: "WebSocket load generator for Supabase-Realtime-style servers (Benchmarks/realtime.sh).",
        subcommands: [Idle.self, Broadcast.self, Changes.self, RedisFanout.self, PgListen.self, SelfTest.self])
}

struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Open and join N sockets, hold them, count the open ones.")
    @OptionGroup var common: Common
    @Option(help: "ws://host:port/p/<portal>/realtime/v1/websocket?apikey=...&vsn=1.0.0") var url: String
    @Option(help: "Sockets to open.") var connections = 1000
    @Option(help: "Seconds to hold them once all settled.") var hold = 5.0
    @Option(help: "Channel name (realtime:<name>), one per socket when --spread.") var topic = "idle"
    @Flag(help: "Each socket joins its own channel (idle-<n>) instead of one shared channel.") var spread = false
    @Option(name: .customLong("server-pid"), help: "Read this process's VmRSS before and after.") var serverPid: Int32?

    func run() async throws {
        let (host, port, path) = try parseURL(url)
        let (loops, sources, deadline) = try prepare(common, connections: connections)
        let target = Target(host: host, port: port, path: path, marker: Array("\"mbt\":".utf8), clock: .monotonicNanoseconds)
        let rssBefore = serverPid.flatMap(residentKB)
        startHeartbeats(loops: loops)
        let t0 = monotonicNanoseconds()
        let shared = joinMessage(topic: topic, postgresTable: nil, accessToken: nil)
        var counters = try await ramp(loops: loops, count: connections, rate: common.connectRate, inflight: common.inflight, deadline: deadline, sources: sources) {
            i, loop, source in
            openPhoenix(
                loops: loops, loopIndex: loop, source: source, target: target,
                join: spread ? joinMessage(topic: "\(topic)-\(i)", postgresTable: nil, accessToken: nil) : shared)
        }
        let rampSeconds = Double(monotonicNanoseconds() - t0) / 1e9
        warn("idle: \(describe(counters)) after \(fixed(1, rampSeconds)) s; holding \(hold) s")
        // Let the server settle (buffers from the joins freed) before it is weighed.
        await sleepSeconds(1)
        counters = try await loops.counters()
        say("HOLDING open=\(counters.joined - counters.closedAfterJoin)")
        await sleepSeconds(min(hold, Double(deadline > monotonicNanoseconds() ? deadline - monotonicNanoseconds() : 0) / 1e9))
        let rssAfter = serverPid.flatMap(residentKB)
        counters = try await loops.counters()
        let open = counters.joined - counters.closedAfterJoin
        var rssFields = ""
        if let before = rssBefore, let after = rssAfter {
            let per = open > 0 ? Double(after - before) / Double(open) : 0
            rssFields = " rss_before_kb=\(before) rss_after_kb=\(after) kb_per_connection=\(fixed(2, per))"
        }
        reportError(counters)
        let selfKB = residentKB(pid: getpid()) ?? 0
        say("RESULT mode=idle connections=\(connections) open=\(open) \(describe(counters)) ramp_s=\(fixed(1, rampSeconds)) hold_s=\(hold)\(rssFields) generator_rss_kb=\(selfKB)")
        loops.shutdown()
    }
}

struct Broadcast: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "N subscribers on one channel, one publisher sending M broadcasts at R/s.")
    @OptionGroup var common: Common
    @Option(help: "ws://host:port/p/<portal>/realtime/v1/websocket?apikey=...&vsn=1.0.0") var url: String
    @Option var subscribers = 1000
    @Option var messages = 100
    @Option(help: "Broadcasts per second sent by the publisher (0: all at once).") var rate = 50.0
    @Option(help: "Channel name (realtime:<name>).") var topic = "bench"
    @Option(help: "ws (a Phoenix socket) or http (POST .../realtime/v1/api/broadcast).") var publish = "ws"
    @Option(name: .customLong("http-url"), help: "http://host:port/p/<portal>/realtime/v1/api/broadcast") var httpURL: String?
    @Option(name: .customLong("service-key"), help: "API key for the HTTP publisher.") var serviceKey: String?
    @Option(name: .customLong("payload-bytes"), help: "Padding added to each payload.") var payloadBytes = 0
    @Option(help: "Stop waiting this many seconds after the last delivery.") var drain = 5.0

    func run() async throws {
        let (host, port, path) = try parseURL(url)
        let (loops, sources, deadline) = try prepare(common, connections: subscribers + 1)
        let target = Target(host: host, port: port, path: path, marker: Array("\"mbt\":".utf8), clock: .monotonicNanoseconds)
        startHeartbeats(loops: loops)
        let join = joinMessage(topic: topic, postgresTable: nil, accessToken: nil)
        var counters = try await ramp(loops: loops, count: subscribers, rate: common.connectRate, inflight: common.inflight, deadline: deadline, sources: sources) {
            _, loop, source in
            openPhoenix(loops: loops, loopIndex: loop, source: source, target: target, join: join)
        }
        let subscribed = counters.joined
        warn("broadcast: subscribers \(describe(counters))")
        let pad = payloadBytes > 0 ? #","pad":""# + String(repeating: "x", count: payloadBytes) + "\"" : ""
        let topic = self.topic

        // The publisher.
        var send: ((Range<Int>) -> Void)?
        if publish == "ws" {
            let loop = loops.loops[0]
            let holder = try await loop.submit { NIOLoopBound(PublisherHolder(), eventLoop: loop) }.get()
            openPhoenix(loops: loops, loopIndex: 0, source: nil, target: target, join: join) { client in
                client.onJoined = { holder.value.client = $0 }
            }
            for _ in 0..<500 where try await loop.submit({ holder.value.client == nil }).get() {
                try await Task.sleep(nanoseconds: 10_000_000)
            }
            if try await loop.submit({ holder.value.client == nil }).get() {
                counters = try await loops.counters()
                reportError(counters)
                say("RESULT mode=broadcast subscribers=\(subscribers) subscribed=\(subscribed) error=publisher_not_joined")
                throw ExitCode(2)
            }
            send = { range in
                loop.execute {
                    guard let client = holder.value.client else { return }
                    for seq in range {
                        let ref = client.nextRef()
                        client.sendText(
                            #"{"topic":"realtime:\#(topic)","event":"broadcast","payload":{"type":"broadcast","event":"e","payload":\#(broadcastPayload(seq: seq, pad: pad))},"ref":"\#(ref)"}"#
                        )
                    }
                }
            }
        } else {
            guard let httpURL, let serviceKey else { throw ValidationError("--publish http needs --http-url and --service-key") }
            let (hhost, hport, hpath) = try parseURL(httpURL)
            let bound = loops.stats[0]
            let channel = try await ClientBootstrap(group: loops.loops[0]).channelInitializer { ch in
                do {
                    try ch.pipeline.syncOperations.addHTTPClientHandlers()
                    try ch.pipeline.syncOperations.addHandler(HTTPAnswerCounter(stats: bound.value))
                    return ch.eventLoop.makeSucceededVoidFuture()
                } catch { return ch.eventLoop.makeFailedFuture(error) }
            }.connect(host: hhost, port: hport).get()
            send = { range in
                for seq in range {
                    let body = #"{"messages":[{"topic":"\#(topic)","event":"e","payload":\#(broadcastPayload(seq: seq, pad: pad))}]}"#
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(hhost):\(hport)")
                    headers.add(name: "apikey", value: serviceKey)
                    headers.add(name: "Authorization", value: "Bearer \(serviceKey)")
                    headers.add(name: "Content-Type", value: "application/json")
                    headers.add(name: "Content-Length", value: String(body.utf8.count))
                    channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: hpath, headers: headers)), promise: nil)
                    channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(string: body))), promise: nil)
                    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                }
            }
        }
        try await Task.sleep(nanoseconds: 500_000_000)
        try await loops.resetDeliveries()
        let expected = UInt64(subscribed) * UInt64(messages)
        let (sent, startNs, endNs) = await pace(messages: messages, rate: rate, deadline: deadline, send: send!)
        counters = try await waitForDeliveries(loops: loops, expected: UInt64(subscribed) * UInt64(sent), drain: drain, deadline: deadline)
        let histogram = try await loops.latency()
        reportError(counters)
        let head = "RESULT mode=broadcast publish=\(publish) subscribers=\(subscribers) subscribed=\(subscribed) messages=\(messages) sent=\(sent) rate=\(rate)"
        let sendSeconds: String = fixed(3, Double(endNs - startNs) / 1e9)
        let fields: String = deliveryFields(counters, expected: expected, startNs: startNs, histogram: histogram)
        say("\(head) send_s=\(sendSeconds) \(fields) closed_after_join=\(counters.closedAfterJoin)")
        loops.shutdown()
    }
}

final class PublisherHolder {
    var client: PhoenixClient?
}

/// Waits for deliveries that something else causes (inserts, NOTIFYs): ends at `expect`
/// deliveries, or `idle` seconds after the last one, or the deadline.
func passiveCount(loops: Loops, expect: UInt64, idle: Double, deadline: UInt64) async throws -> Counters {
    var counters = try await loops.counters()
    var last: UInt64 = 0
    var lastChange = monotonicNanoseconds()
    while monotonicNanoseconds() < deadline {
        counters = try await loops.counters()
        if expect > 0 && counters.deliveries >= expect { break }
        if counters.deliveries != last {
            last = counters.deliveries
            lastChange = monotonicNanoseconds()
        } else if counters.deliveries > 0 && Double(monotonicNanoseconds() - lastChange) / 1e9 > idle {
            break
        }
        try await Task.sleep(nanoseconds: 20_000_000)
    }
    return try await loops.counters()
}

struct Changes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "N postgres_changes subscribers with their own JWTs; prints READY, counts deliveries.")
    @OptionGroup var common: Common
    @Option(help: "ws://host:port/p/<portal>/realtime/v1/websocket?apikey=...&vsn=1.0.0") var url: String
    @Option var subscribers = 100
    @Option(help: "File of user JWTs, one a line (subscriber i uses line i mod count).") var tokens: String
    @Option(help: "File of postgres_changes filters, one a line, beside the tokens (subscriber i uses line i mod count); none: every row.")
    var filters: String?
    @Option(help: "Table in schema public.") var table = "rt"
    @Option(help: "Channel name (realtime:<name>).") var topic = "changes"
    @Option(help: "Column holding clock_timestamp() in µs since the epoch.") var column = "sent_us"
    @Option(help: "Stop at this many deliveries (0: when they stop).") var expect: UInt64 = 0
    @Option(help: "Stop this many seconds after the last delivery.") var idle = 5.0

    func run() async throws {
        let (host, port, path) = try parseURL(url)
        guard let file = fopen(tokens, "r") else { throw ValidationError("cannot read \(tokens)") }
        var list: [String] = []
        var line = [CChar](repeating: 0, count: 8192)
        while fgets(&line, Int32(line.count), file) != nil {
            let token = cLine(line).trimmingCharacters(in: " \n\r")
            if !token.isEmpty { list.append(token) }
        }
        fclose(file)
        guard !list.isEmpty else { throw ValidationError("no tokens in \(tokens)") }
        var filterList: [String] = []
        if let filters {
            guard let file = fopen(filters, "r") else { throw ValidationError("cannot read \(filters)") }
            while fgets(&line, Int32(line.count), file) != nil {
                let filter = cLine(line).trimmingCharacters(in: " \n\r")
                if !filter.isEmpty { filterList.append(filter) }
            }
            fclose(file)
            guard !filterList.isEmpty else { throw ValidationError("no filters in \(filters)") }
        }
        let (loops, sources, deadline) = try prepare(common, connections: subscribers)
        let target = Target(host: host, port: port, path: path, marker: Array("\"\(column)\":".utf8), clock: .realtimeMicroseconds)
        startHeartbeats(loops: loops)
        let counters0 = try await ramp(loops: loops, count: subscribers, rate: common.connectRate, inflight: common.inflight, deadline: deadline, sources: sources) {
            i, loop, source in
            openPhoenix(
                loops: loops, loopIndex: loop, source: source, target: target,
                join: joinMessage(
                    topic: topic, postgresTable: table, accessToken: list[i % list.count],
                    filter: filterList.isEmpty ? nil : filterList[i % filterList.count]))
        }
        reportError(counters0)
        say("READY joined=\(counters0.joined) failed=\(counters0.failed)")
        try await loops.resetDeliveries()
        let counters = try await passiveCount(loops: loops, expect: expect, idle: idle, deadline: deadline)
        let histogram = try await loops.latency()
        reportError(counters)
        let fields: String = deliveryFields(counters, expected: expect, startNs: counters.firstDeliveryNs, histogram: histogram)
        let distinct = min(list.count, subscribers)
        say(
            "RESULT mode=changes subscribers=\(subscribers) subscribed=\(counters0.joined) distinct_tokens=\(distinct) \(fields) closed_after_join=\(counters.closedAfterJoin) other_frames=\(counters.otherFrames)"
        )
        loops.shutdown()
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

struct RedisFanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis", abstract: "The broadcast peer: N Redis subscribers, one publisher, same payloads and rate.")
    @OptionGroup var common: Common
    @Option(name: .customLong("redis-port")) var redisPort = 6379
    @Option var subscribers = 1000
    @Option var messages = 100
    @Option var rate = 50.0
    @Option var channel = "bench"
    @Option(name: .customLong("payload-bytes")) var payloadBytes = 0
    @Option var drain = 5.0

    func run() async throws {
        let (loops, sources, deadline) = try prepare(common, connections: subscribers + 1)
        let marker = Array("\"mbt\":".utf8)
        let channelName = channel
        let port = redisPort
        var counters = try await ramp(loops: loops, count: subscribers, rate: common.connectRate, inflight: common.inflight, deadline: deadline, sources: sources) {
            _, loop, source in
            openRedisSubscriber(loops: loops, loopIndex: loop, source: source, port: port, channel: channelName, marker: marker)
        }
        let subscribed = counters.joined
        warn("redis: subscribers \(describe(counters))")
        let publisher = try await ClientBootstrap(group: loops.loops[0]).channelInitializer { ch in
            do {
                try ch.pipeline.syncOperations.addHandler(Sink())
                return ch.eventLoop.makeSucceededVoidFuture()
            } catch { return ch.eventLoop.makeFailedFuture(error) }
        }.connect(host: "127.0.0.1", port: port).get()
        let pad = payloadBytes > 0 ? #","pad":""# + String(repeating: "x", count: payloadBytes) + "\"" : ""
        try await Task.sleep(nanoseconds: 500_000_000)
        try await loops.resetDeliveries()
        let expected = UInt64(subscribed) * UInt64(messages)
        let (sent, startNs, endNs) = await pace(messages: messages, rate: rate, deadline: deadline) { range in
            var buffer = publisher.allocator.buffer(capacity: 128 * range.count)
            for seq in range { buffer.writeString(resp(["PUBLISH", channelName, broadcastPayload(seq: seq, pad: pad)])) }
            publisher.writeAndFlush(buffer, promise: nil)
        }
        counters = try await waitForDeliveries(loops: loops, expected: UInt64(subscribed) * UInt64(sent), drain: drain, deadline: deadline)
        let histogram = try await loops.latency()
        reportError(counters)
        let head = "RESULT mode=redis subscribers=\(subscribers) subscribed=\(subscribed) messages=\(messages) sent=\(sent) rate=\(rate)"
        let sendSeconds: String = fixed(3, Double(endNs - startNs) / 1e9)
        let fields: String = deliveryFields(counters, expected: expected, startNs: startNs, histogram: histogram)
        say("\(head) send_s=\(sendSeconds) \(fields) closed_after_join=\(counters.closedAfterJoin)")
        loops.shutdown()
    }
}

struct PgListen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pg-listen", abstract: "The changes peer: LISTEN connections; NOTIFY payloads carry CLOCK_REALTIME µs.")
    @OptionGroup var common: Common
    @Option(help: "Postgres Unix socket file (.../.s.PGSQL.5432).") var socket: String
    @Option var user = "postgres"
    @Option var database = "postgres"
    @Option var channel = "bench"
    @Option var listeners = 1
    @Option var expect: UInt64 = 0
    @Option var idle = 5.0

    func run() async throws {
        let (loops, _, deadline) = try prepare(common, connections: listeners)
        let (socket, user, database, channel) = (self.socket, self.user, self.database, self.channel)
        let counters0 = try await ramp(loops: loops, count: listeners, rate: common.connectRate, inflight: min(common.inflight, 50), deadline: deadline, sources: nil) {
            _, loop, _ in
            openPostgresListener(loops: loops, loopIndex: loop, socketPath: socket, user: user, database: database, channel: channel)
        }
        reportError(counters0)
        say("READY joined=\(counters0.joined) failed=\(counters0.failed)")
        try await loops.resetDeliveries()
        let counters = try await passiveCount(loops: loops, expect: expect, idle: idle, deadline: deadline)
        let histogram = try await loops.latency()
        reportError(counters)
        let fields: String = deliveryFields(counters, expected: expect, startNs: counters.firstDeliveryNs, histogram: histogram)
        say("RESULT mode=pg-listen listeners=\(listeners) subscribed=\(counters0.joined) \(fields)")
        loops.shutdown()
    }
}

struct SelfTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "self-test", abstract: "Check the generator against an in-process fake Phoenix server.", shouldDisplay: false)
    @Option var connections = 2000
    @Option var subscribers = 500
    @Option var messages = 20

    func run() async throws {
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (server, port) = try startFakeServer(group: serverGroup)
        let url = "ws://127.0.0.1:\(port)/socket?vsn=1.0.0"
        let pid = getpid()

        let idle = try Idle.parse(["--url", url, "--connections", String(connections), "--hold", "1", "--seconds", "60", "--server-pid", String(pid), "--spread"])
        try await idle.run()
        let broadcast = try Broadcast.parse([
            "--url", url, "--subscribers", String(subscribers), "--messages", String(messages), "--rate", "100", "--seconds", "60", "--drain", "2",
        ])
        try await broadcast.run()
        try await server.close()
        try await serverGroup.shutdownGracefully()
        say("SELFTEST done (check the RESULT lines: open=\(connections), deliveries=\(subscribers * messages))")
    }
}
