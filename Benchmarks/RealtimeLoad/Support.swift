import NIOCore
import NIOPosix

// Clocks, the latency histogram, per-event-loop counters, source addresses and the
// fd limit: what every mode of bench-realtime shares.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// CLOCK_MONOTONIC in nanoseconds: system-wide, so a timestamp written by one process
/// can be compared with the clock of another on the same machine.
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}

/// CLOCK_REALTIME in microseconds since the epoch (what Postgres' clock_timestamp() gives).
@inline(__always) func realtimeMicroseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000 &+ UInt64(spec.tv_nsec) / 1000
}

/// Prints a line and flushes at once (the script waits for READY lines on a pipe).
func say(_ line: String) {
    print(line)
    fflush(nil)
}

func warn(_ line: String) {
    let text = Array("bench-realtime: \(line)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Log-linear histogram of microseconds: exact below 2048 µs, then 1024 sub-buckets per
/// power of two (under 0.1 % error), up to about 2^42 µs.
struct Histogram: Sendable {
    static let linear = 2048
    static let perOctave = 1024
    static let octaves = 32
    var counts = [UInt64](repeating: 0, count: linear + perOctave * octaves)
    var total: UInt64 = 0
    var max: UInt64 = 0

    @inline(__always) static func index(_ value: UInt64) -> Int {
        if value < UInt64(linear) { return Int(value) }
        let shift = (64 - value.leadingZeroBitCount) - 11
        if shift > octaves { return linear + perOctave * octaves - 1 }
        return linear + (shift - 1) * perOctave + Int((value >> UInt64(shift)) - UInt64(perOctave))
    }

    static func value(at index: Int) -> UInt64 {
        if index < linear { return UInt64(index) }
        let shift = (index - linear) / perOctave + 1
        let mantissa = UInt64((index - linear) % perOctave + perOctave)
        return mantissa << UInt64(shift)
    }

    @inline(__always) mutating func record(_ value: UInt64) {
        counts[Self.index(value)] &+= 1
        total &+= 1
        if value > max { max = value }
    }

    mutating func merge(_ other: Histogram) {
        for i in 0..<counts.count where other.counts[i] != 0 { counts[i] &+= other.counts[i] }
        total += other.total
        if other.max > max { max = other.max }
    }

    /// The value at quantile q (0...1), in the recorded unit; nil when empty.
    func quantile(_ q: Double) -> UInt64? {
        guard total > 0 else { return nil }
        let rank = UInt64((Double(total) * q).rounded(.up))
        var seen: UInt64 = 0
        for i in 0..<counts.count {
            seen += counts[i]
            if seen >= Swift.max(rank, 1) { return Self.value(at: i) }
        }
        return max
    }
}

/// Counters of one event loop. Only that loop touches them (no locks on the hot path);
/// the driver reads copies through `EventLoop.submit`.
final class LoopStats {
    var started = 0
    var connected = 0  // upgraded (WebSocket) or TCP-connected (Redis, Postgres)
    var joined = 0
    var joinErrors = 0
    var failed = 0  // never joined: connect, upgrade or join failed, or closed first
    var closedAfterJoin = 0
    var deliveries: UInt64 = 0
    var unparsed: UInt64 = 0  // marker found but no number after it
    var otherFrames: UInt64 = 0
    var firstDeliveryNs: UInt64 = 0
    var lastDeliveryNs: UInt64 = 0
    var firstError: String?
    var latency = Histogram()
    /// Joined WebSocket clients, for heartbeats (index kept in each client).
    var clients: [PhoenixClient] = []
    var heartbeatTick = 0

    func fail(_ reason: String) {
        failed += 1
        if firstError == nil { firstError = reason }
    }

    func delivered(latency value: UInt64?, at now: UInt64) {
        deliveries &+= 1
        if firstDeliveryNs == 0 { firstDeliveryNs = now }
        lastDeliveryNs = now
        if let value { latency.record(value) } else { unparsed &+= 1 }
    }

    func counters() -> Counters {
        Counters(
            started: started, connected: connected, joined: joined, joinErrors: joinErrors, failed: failed,
            closedAfterJoin: closedAfterJoin, deliveries: deliveries, unparsed: unparsed, otherFrames: otherFrames,
            firstDeliveryNs: firstDeliveryNs, lastDeliveryNs: lastDeliveryNs, firstError: firstError)
    }
}

/// A copy of the counters of one or all loops.
struct Counters: Sendable {
    var started = 0, connected = 0, joined = 0, joinErrors = 0, failed = 0, closedAfterJoin = 0
    var deliveries: UInt64 = 0, unparsed: UInt64 = 0, otherFrames: UInt64 = 0
    var firstDeliveryNs: UInt64 = 0, lastDeliveryNs: UInt64 = 0
    var firstError: String?

    mutating func add(_ o: Counters) {
        started += o.started
        connected += o.connected
        joined += o.joined
        joinErrors += o.joinErrors
        failed += o.failed
        closedAfterJoin += o.closedAfterJoin
        deliveries += o.deliveries
        unparsed += o.unparsed
        otherFrames += o.otherFrames
        if o.firstDeliveryNs != 0 && (firstDeliveryNs == 0 || o.firstDeliveryNs < firstDeliveryNs) { firstDeliveryNs = o.firstDeliveryNs }
        if o.lastDeliveryNs > lastDeliveryNs { lastDeliveryNs = o.lastDeliveryNs }
        if firstError == nil { firstError = o.firstError }
    }

    /// Connections whose fate is known (joined, or failed).
    var settled: Int { joined + failed }
}

/// The event loops of the generator and each one's counters.
final class Loops: Sendable {
    let group: MultiThreadedEventLoopGroup
    let loops: [EventLoop]
    let stats: [NIOLoopBound<LoopStats>]

    init(threads: Int) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        var loops: [EventLoop] = []
        var iterator = group.makeIterator()
        while let loop = iterator.next() { loops.append(loop) }
        self.loops = loops
        stats = loops.map { loop in
            // NIOLoopBound's init must run on its loop.
            try! loop.submit { NIOLoopBound(LoopStats(), eventLoop: loop) }.wait()
        }
    }

    func counters() async throws -> Counters {
        var total = Counters()
        for i in loops.indices {
            let bound = stats[i]
            total.add(try await loops[i].submit { bound.value.counters() }.get())
        }
        return total
    }

    func latency() async throws -> Histogram {
        var total = Histogram()
        for i in loops.indices {
            let bound = stats[i]
            total.merge(try await loops[i].submit { bound.value.latency }.get())
        }
        return total
    }

    /// Resets delivery counters and latency (after a warm-up, say).
    func resetDeliveries() async throws {
        for i in loops.indices {
            let bound = stats[i]
            try await loops[i].submit {
                let s = bound.value
                s.deliveries = 0
                s.unparsed = 0
                s.firstDeliveryNs = 0
                s.lastDeliveryNs = 0
                s.latency = Histogram()
            }.get()
        }
    }

    func shutdown() {
        try? group.syncShutdownGracefully()
    }
}

/// Source addresses over 127.0.0.0/8: 127.1.0.1, 127.1.0.2, ... Each gets its own
/// ephemeral port range, so N connections need N / 28k of them at least.
struct SourceAddresses: Sendable {
    let addresses: [SocketAddress]

    init(count: Int) throws {
        var list: [SocketAddress] = []
        for k in 0..<Swift.max(count, 1) {
            list.append(try SocketAddress(ipAddress: "127.\(1 + k / 62500).\(k / 250 % 250).\(k % 250 + 1)", port: 0))
        }
        addresses = list
    }

    func address(for index: Int) -> SocketAddress { addresses[index % addresses.count] }
}

/// Raises RLIMIT_NOFILE: the soft limit to the hard one, and, as root (CAP_SYS_RESOURCE),
/// the hard one too, up to `wanted` (bounded by fs.nr_open). Returns the soft limit in force.
func raiseFileLimit(wanted: Int) -> Int {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    if limit.rlim_max < rlim_t(wanted) {
        var higher = limit
        higher.rlim_max = rlim_t(wanted)
        higher.rlim_cur = rlim_t(wanted)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &higher) == 0 { limit = higher }
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return Int(limit.rlim_cur)
}

/// VmRSS of a process in KB (nil when it cannot be read).
func residentKB(pid: Int32) -> Int? {
    guard let file = fopen("/proc/\(pid)/status", "r") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 512)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = cLine(line)
        if text.hasPrefix("VmRSS:") {
            return Int(text.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
    }
    return nil
}

/// Finds `needle` in the readable bytes of `buffer`; returns the offset after it.
@inline(__always) func offsetAfter(_ needle: [UInt8], in buffer: ByteBuffer) -> Int? {
    buffer.withUnsafeReadableBytes { bytes -> Int? in
        guard let base = bytes.baseAddress, bytes.count >= needle.count else { return nil }
        return needle.withUnsafeBytes { n -> Int? in
            guard let needleBase = n.baseAddress else { return nil }
            let first = Int32(n[0])
            var offset = 0
            let last = bytes.count - n.count
            while offset <= last {
                guard let hit = memchr(base + offset, first, last - offset + 1) else { return nil }
                let at = base.distance(to: UnsafeRawPointer(hit))
                if memcmp(hit, needleBase, n.count) == 0 { return at + n.count }
                offset = at + 1
            }
            return nil
        }
    }
}

@inline(__always) func contains(_ needle: [UInt8], in buffer: ByteBuffer) -> Bool {
    offsetAfter(needle, in: buffer) != nil
}

/// The unsigned integer right after `marker` (a JSON key with its colon), allowing spaces
/// and a quote (numbers sent as strings); nil when the marker is absent. `found` tells
/// whether the marker was seen at all.
@inline(__always) func number(after marker: [UInt8], in buffer: ByteBuffer) -> (found: Bool, value: UInt64?) {
    guard let start = offsetAfter(marker, in: buffer) else { return (false, nil) }
    return buffer.withUnsafeReadableBytes { bytes in
        var i = start
        while i < bytes.count && (bytes[i] == 0x20 || bytes[i] == 0x22) { i += 1 }
        var value: UInt64 = 0
        var digits = 0
        while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 {
            value = value &* 10 &+ UInt64(bytes[i] - 0x30)
            digits += 1
            i += 1
        }
        return (true, digits > 0 ? value : nil)
    }
}

func formatMs(_ microseconds: UInt64?) -> String {
    guard let microseconds else { return "n/a" }
    let ms = Double(microseconds) / 1000
    var text = String(Int((ms * 100).rounded()))
    while text.count < 3 { text = "0" + text }
    return "\(text.dropLast(2)).\(text.suffix(2))"
}

func sleepSeconds(_ seconds: Double) async {
    try? await Task.sleep(nanoseconds: UInt64(Swift.max(seconds, 0) * 1e9))
}

/// A number with `digits` decimals (no Foundation here).
func fixed(_ digits: Int, _ value: Double) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let negative = value < 0
    let scaled = Int((abs(value) * scale).rounded())
    var text = String(scaled)
    if digits > 0 {
        while text.count <= digits { text = "0" + text }
        text = "\(text.dropLast(digits)).\(text.suffix(digits))"
    }
    return negative ? "-" + text : text
}

/// The text of a NUL-terminated line read by fgets.
func cLine(_ line: [CChar]) -> String {
    String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
