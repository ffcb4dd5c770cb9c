import Foundation
import MeltyJSON
import MeltyPostgres
import MeltyProcess
import Synchronization

/// What a worker said about one request, in order, for the invocation that runs it.
enum WorkerEvent: Sendable {
    /// The function's body stream wants the next chunk.
    case bodyPull
    /// The response's status and headers.
    case head(status: Int, headers: [(String, String)])
    /// A chunk of the response body.
    case body([UInt8])
    /// The response is complete.
    case end
    /// A whole response whose head, body and end arrived together (one read of the
    /// worker's stdout): handed over as one answer instead of a stream.
    case complete(status: Int, headers: [(String, String)], body: [UInt8])
    /// The handler threw before its response head.
    case error(message: String, stack: String?)
    /// The request ended without a response: a limit, or the worker died.
    case failed(EdgeFailure)
    /// The client went away while its body was read.
    case clientGone
}

/// One `deno run` of the runner for one function version, spoken to in frames over its stdin
/// and stdout (non-blocking, waited on with the plugin's event loop: no thread per worker).
///
/// Owns the process: it reaps it (no zombie) once stdout ends, and kills its whole process
/// group with SIGKILL. Requests are routed by the frame's id; each gets an `AsyncStream` of
/// ``WorkerEvent``s that ends with `.end`, `.error` or `.failed`.
final class DenoWorker: Sendable {
    /// One request in flight.
    private struct Route {
        let kernelID: String
        let continuation: AsyncStream<WorkerEvent>.Continuation
        let started: ContinuousClock.Instant
        /// The worker's CPU time when the monitor first saw the request (nil until then):
        /// reading /proc on every request would cost more than the request; the first
        /// sample comes within one monitor interval, so up to that much CPU goes uncounted.
        var cpuAtStart: Int?
    }

    private enum Phase {
        case starting
        case ready
        case exited
    }

    private struct State {
        var phase = Phase.starting
        var readyWaiter: CheckedContinuation<WorkerStartError?, Never>?
        var startError: WorkerStartError?
        var routes: [UInt32: Route] = [:]
        var nextID: UInt32 = 1
        var stderrTail: [UInt8] = []
        var stderrDone = false
        var stderrWaiter: CheckedContinuation<Void, Never>?
        var killReason: EdgeFailure?
        /// Set once the process is being reaped: no signal may go to its pid after that.
        var reaping = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// What goes to stdin, under its own lock: a write (a system call) never holds up the
    /// routing of the worker's frames, nor a request's start or end.
    private struct Output {
        var outgoing: [UInt8] = []
        var outgoingOffset = 0
        var writerWaiting = false
        var stdinClosed = false
    }
    private let output = Mutex(Output())

    /// The process (and process group) id.
    let pid: pid_t
    /// The pool's number for this worker.
    let serial: Int
    private let function: String
    /// The version's limits.
    let limits: EdgeLimits
    private let stdinDescriptor: CInt
    private let stdoutDescriptor: CInt
    private let stderrDescriptor: CInt
    private let loop: PostgresEventLoop
    private let onLog: @Sendable (_ requestID: String, _ level: String, _ message: String) -> Void
    private let onExit: @Sendable (DenoWorker) -> Void
    private let state = Mutex(State())

    /// How much of stderr is kept for diagnostics.
    static let stderrTailBytes = 4096
    /// V8's fatal out-of-memory messages contain this (any case).
    private static let outOfMemoryText = "out of memory"
    /// Headroom of the RLIMIT_DATA backstop over `memory_mb`: an idle Deno 2.9 reserves about
    /// 560 MB of private writable address space (V8's cage) before it runs anything.
    static let dataLimitHeadroomMegabytes = 1024

    private init(
        pid: pid_t, serial: Int, function: String, limits: EdgeLimits, stdin: CInt, stdout: CInt, stderr: CInt, loop: PostgresEventLoop,
        onLog: @escaping @Sendable (String, String, String) -> Void, onExit: @escaping @Sendable (DenoWorker) -> Void
    ) {
        self.pid = pid
        self.serial = serial
        self.function = function
        self.limits = limits
        self.stdinDescriptor = stdin
        self.stdoutDescriptor = stdout
        self.stderrDescriptor = stderr
        self.loop = loop
        self.onLog = onLog
        self.onExit = onExit
    }

    /// Starts the process and its readers; ``waitUntilReady()`` then waits for READY.
    /// `onExit` is called once, after the process is reaped and before its requests fail.
    static func spawn(
        function: String, serial: Int, launch: WorkerLaunch, loop: PostgresEventLoop,
        onLog: @escaping @Sendable (String, String, String) -> Void, onExit: @escaping @Sendable (DenoWorker) -> Void
    ) throws(WorkerStartError) -> DenoWorker {
        var opened: [CInt] = []
        func pair() throws(WorkerStartError) -> (read: CInt, write: CInt) {
            do {
                let ends = try ChildSpawn.pipe()
                opened += [ends.read, ends.write]
                return ends
            } catch {
                throw WorkerStartError(message: "cannot create the worker's pipes: \(error)")
            }
        }
        let pid: pid_t
        let stdin: (read: CInt, write: CInt)
        let stdout: (read: CInt, write: CInt)
        let stderr: (read: CInt, write: CInt)
        do throws(WorkerStartError) {
            stdin = try pair()
            stdout = try pair()
            stderr = try pair()
            for descriptor in [stdin.write, stdout.read, stderr.read] {
                let flags = fcntl(descriptor, F_GETFL)
                guard flags >= 0, fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) == 0 else {
                    throw WorkerStartError(message: "cannot make the worker's pipes non-blocking: \(String(cString: strerror(errno)))")
                }
            }
            do {
                pid = try ChildSpawn.spawn(
                    executable: launch.executable, arguments: launch.command, environment: launch.processEnvironment,
                    stdin: stdin.read, stdout: stdout.write, stderr: stderr.write)
            } catch {
                throw WorkerStartError(message: "\(error)")
            }
        } catch {
            for descriptor in opened { close(descriptor) }
            throw error
        }
        for descriptor in [stdin.read, stdout.write, stderr.write] { close(descriptor) }
        // A backstop against allocations faster than the monitor samples (ArrayBuffers are
        // outside V8's heap limit): past it an allocation fails with a RangeError in the function.
        limitData(of: pid, megabytes: launch.limits.memoryMegabytes + dataLimitHeadroomMegabytes)
        let worker = DenoWorker(
            pid: pid, serial: serial, function: function, limits: launch.limits, stdin: stdin.write, stdout: stdout.read, stderr: stderr.read, loop: loop,
            onLog: onLog, onExit: onExit)
        Task { await worker.readStderr() }
        worker.readStdout()
        return worker
    }

    /// glibc's `prlimit`, which Swift's Glibc module does not export (it is behind `_GNU_SOURCE`).
    private typealias PrlimitFunction = @convention(c) (pid_t, CInt, UnsafePointer<rlimit>?, UnsafeMutablePointer<rlimit>?) -> CInt
    private static let prlimitFunction: PrlimitFunction? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "prlimit").map {
        unsafeBitCast($0, to: PrlimitFunction.self)
    }

    /// Sets RLIMIT_DATA of the child (soft and hard). Best effort: the RSS monitor is the limit; this is its backstop.
    private static func limitData(of pid: pid_t, megabytes: Int) {
        guard let prlimitFunction else { return }
        let bytes = rlim_t(megabytes) << 20
        var limit = rlimit(rlim_cur: bytes, rlim_max: bytes)
        _ = prlimitFunction(pid, CInt(RLIMIT_DATA.rawValue), &limit, nil)
    }

    /// Waits for READY; kills the worker and throws when it refuses, dies or takes longer than `timeout`.
    func waitUntilReady(timeout: Duration) async throws(WorkerStartError) {
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            self?.failStart(WorkerStartError(message: "the worker did not answer READY within \(timeout.components.seconds) s"))
        }
        defer { timer.cancel() }
        let error: WorkerStartError? = await withCheckedContinuation { continuation in
            let immediate: WorkerStartError?? = state.withLock { state in
                switch state.phase {
                case .ready: return .some(nil)
                case .exited: return .some(state.startError ?? WorkerStartError(message: "the worker exited before READY"))
                case .starting:
                    if let startError = state.startError { return .some(startError) }
                    state.readyWaiter = continuation
                    return nil
                }
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
        if let error {
            kill(nil)
            throw error
        }
    }

    private func failStart(_ error: WorkerStartError) {
        let waiter = state.withLock { state -> CheckedContinuation<WorkerStartError?, Never>? in
            guard state.phase == .starting, state.startError == nil else { return nil }
            state.startError = error
            defer { state.readyWaiter = nil }
            return state.readyWaiter
        }
        waiter?.resume(returning: error)
        kill(nil)
    }

    // MARK: Requests

    /// Registers a request and returns its frame id and events; nil when the worker is gone.
    func begin(kernelID: String) -> (id: UInt32, events: AsyncStream<WorkerEvent>)? {
        let (stream, continuation) = AsyncStream.makeStream(of: WorkerEvent.self)
        let id: UInt32? = state.withLock { state in
            guard state.phase == .ready, state.killReason == nil, state.routes.count < 1_000_000 else { return nil }
            var id = state.nextID
            while id == 0 || state.routes[id] != nil { id &+= 1 }
            state.nextID = id &+ 1
            state.routes[id] = Route(kernelID: kernelID, continuation: continuation, started: .now, cpuAtStart: nil)
            return id
        }
        guard let id else {
            continuation.finish()
            return nil
        }
        return (id, stream)
    }

    /// Forgets a request (its events end).
    func finish(_ id: UInt32) {
        let route = state.withLock { $0.routes.removeValue(forKey: id) }
        route?.continuation.finish()
    }

    /// The client of a request went away: its invocation sees `.clientGone` (and cancels it).
    func clientLeft(_ id: UInt32) {
        let route = state.withLock { $0.routes[id] }
        route?.continuation.yield(.clientGone)
    }

    /// Ends a request with `failure` (its invocation sees `.failed`) and tells the worker to abort it.
    func fail(_ id: UInt32, _ failure: EdgeFailure) {
        let route = state.withLock { $0.routes[id] }
        route?.continuation.yield(.failed(failure))
        send(WorkerFrame(.cancel, id: id))
    }

    /// Requests in flight: kernel id, start, and the worker's CPU time when each started.
    var inFlight: [(id: UInt32, kernelID: String, started: ContinuousClock.Instant, cpuAtStart: Int?)] {
        state.withLock { state in state.routes.map { ($0.key, $0.value.kernelID, $0.value.started, $0.value.cpuAtStart) } }
    }

    /// Gives the requests the monitor sees for the first time their CPU baseline.
    func recordBaselines(cpuMilliseconds: Int) {
        state.withLock { state in
            for id in state.routes.keys where state.routes[id]?.cpuAtStart == nil { state.routes[id]?.cpuAtStart = cpuMilliseconds }
        }
    }

    /// The process's CPU time and memory now.
    var usage: ProcessUsage? { ProcessUsage.read(pid) }

    /// What this worker used that was not reported to the Hub's metering yet.
    let meter = WorkerUsageMeter()

    /// The last 4 KiB of its stderr.
    var stderrTail: String { state.withLock { String(decoding: $0.stderrTail, as: UTF8.self) } }

    /// Whether the process is gone (reaped).
    var hasExited: Bool { state.withLock { $0.phase == .exited } }

    /// SIGKILL to its process group; requests in flight fail with `reason` (or as crashed).
    func kill(_ reason: EdgeFailure?) {
        state.withLock { state in
            if state.killReason == nil { state.killReason = reason }
            guard !state.reaping else { return }
            _ = Glibc.kill(-pid, SIGKILL)
        }
    }

    /// Asks the worker to finish what it runs and exit.
    func drain() { send(WorkerFrame(.drain, id: 0)) }

    /// Returns once the process is reaped.
    func waitForExit() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state in
                if state.phase == .exited { return true }
                state.exitWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    // MARK: Writing

    /// Queues frames for stdin in order and writes what the pipe takes now; the rest is
    /// written when it has room. Frames to a dead worker are dropped.
    func send(_ frames: WorkerFrame...) { send(frames) }

    /// Queues `frames` in order, as the variadic form does.
    func send(_ frames: [WorkerFrame]) {
        let mustWait = output.withLock { state -> Bool in
            guard !state.stdinClosed else { return false }
            for frame in frames { state.outgoing += frame.encoded }
            guard !state.writerWaiting else { return false }
            switch flush(&state) {
            case .done, .failed: return false
            case .blocked:
                state.writerWaiting = true
                return true
            }
        }
        if mustWait { Task { await writeWhenWritable() } }
    }

    private enum FlushResult {
        case done
        case blocked
        case failed
    }

    /// Writes queued bytes until done or the pipe is full (non-blocking, under the lock: it never waits).
    private func flush(_ state: inout Output) -> FlushResult {
        while state.outgoingOffset < state.outgoing.count {
            let offset = state.outgoingOffset
            let written = state.outgoing.withUnsafeBytes { bytes -> Int in
                guard let base = bytes.baseAddress else { return 0 }
                return Glibc.send(stdinDescriptor, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                state.outgoingOffset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if state.outgoingOffset >= 65536 {
                    state.outgoing.removeSubrange(0..<state.outgoingOffset)
                    state.outgoingOffset = 0
                }
                return .blocked
            } else {
                // The worker is gone (EPIPE): what is queued can never arrive; its reader reports the end.
                state.outgoing = []
                state.outgoingOffset = 0
                return .failed
            }
        }
        state.outgoing.removeAll(keepingCapacity: state.outgoing.count <= 1 << 20)
        state.outgoingOffset = 0
        return .done
    }

    private func writeWhenWritable() async {
        while true {
            let waited: Bool
            do {
                _ = try await loop.wait(for: stdinDescriptor, .writable)
                waited = true
            } catch {
                waited = false
            }
            let finished = output.withLock { state -> Bool in
                let result: FlushResult = waited && !state.stdinClosed ? flush(&state) : .failed
                guard result != .blocked else { return false }
                state.writerWaiting = false
                if result == .failed {
                    state.outgoing = []
                    state.outgoingOffset = 0
                }
                // The process ended while this waited: closing stdin was left to this writer.
                if state.stdinClosed { closeDescriptor(stdinDescriptor) }
                return true
            }
            if finished { return }
        }
    }

    private func closeDescriptor(_ descriptor: CInt) {
        loop.forget(descriptor)
        close(descriptor)
    }

    // MARK: Reading

    /// What the stdout reader keeps between wake-ups: touched only by the loop's callbacks,
    /// which run one after another (each re-arms the watch before it returns).
    private final class StdoutReader: @unchecked Sendable {
        var decoder = WorkerFrameDecoder()
        var buffer = [UInt8](repeating: 0, count: 65536)
    }
    private let stdoutReader = StdoutReader()

    /// Reads stdout on the event loop's thread as it becomes readable (no task per worker or
    /// per wake-up): frames are routed to their requests right there.
    private func readStdout() {
        loop.watch(stdoutDescriptor, .readable) { [self] result in
            guard case .success = result else { return stdoutEnded() }
            // A few reads per wake-up at most, so one busy worker does not hold up the loop.
            for _ in 0..<16 {
                let count = stdoutReader.buffer.withUnsafeMutableBytes { Glibc.read(stdoutDescriptor, $0.baseAddress, $0.count) }
                if count > 0 {
                    stdoutReader.decoder.append(stdoutReader.buffer[0..<count])
                    do {
                        var frames: [WorkerFrame] = []
                        while let frame = try stdoutReader.decoder.next() { frames.append(frame) }
                        if let problem = handle(frames) {
                            protocolViolation(problem)
                            return stdoutEnded()
                        }
                    } catch {
                        protocolViolation("\(error)")
                        return stdoutEnded()
                    }
                } else if count == 0 {
                    return stdoutEnded()
                } else if errno == EINTR {
                    continue
                } else if errno == EAGAIN || errno == EWOULDBLOCK {
                    return readStdout()
                } else {
                    return stdoutEnded()
                }
            }
            readStdout()
        }
    }

    private func stdoutEnded() {
        Task { await processEnded() }
    }

    private func protocolViolation(_ problem: String) {
        kill(.crashed(function, "it broke the worker protocol (\(problem))"))
    }

    private func readStderr() async {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(stderrDescriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                state.withLock { state in
                    state.stderrTail += buffer[0..<count]
                    if state.stderrTail.count > Self.stderrTailBytes { state.stderrTail.removeFirst(state.stderrTail.count - Self.stderrTailBytes) }
                }
            } else if count < 0 && errno == EINTR {
                continue
            } else if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                do { _ = try await loop.wait(for: stderrDescriptor, .readable) } catch { break }
            } else {
                break
            }
        }
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.stderrDone = true
            defer { state.stderrWaiter = nil }
            return state.stderrWaiter
        }
        waiter?.resume()
    }

    /// Routes the frames of one read. A request whose head, body chunks and end are all in
    /// them (the runner writes a small response in one go) gets one ``WorkerEvent/complete``.
    private func handle(_ frames: [WorkerFrame]) -> String? {
        var headSeen: Set<UInt32> = []
        var interleaved: Set<UInt32> = []
        var whole: Set<UInt32> = []
        for frame in frames {
            switch frame.kind {
            case .responseHead: headSeen.insert(frame.id)
            case .responseBody: if !headSeen.contains(frame.id) { interleaved.insert(frame.id) }
            case .responseEnd: if headSeen.contains(frame.id), !interleaved.contains(frame.id) { whole.insert(frame.id) }
            case .bodyPull, .error: interleaved.insert(frame.id)
            default: break
            }
        }
        var collected: [UInt32: (status: Int, headers: [(String, String)], body: [UInt8])] = [:]
        for frame in frames {
            guard whole.contains(frame.id) else {
                if let problem = handle(frame) { return problem }
                continue
            }
            switch frame.kind {
            case .responseHead:
                switch Self.head(of: frame) {
                case .success(let head): collected[frame.id] = (head.status, head.headers, [])
                case .failure(let problem): return problem.text
                }
            case .responseBody:
                collected[frame.id]?.body.append(contentsOf: frame.payload)
            case .responseEnd:
                if let response = collected.removeValue(forKey: frame.id) {
                    deliver(frame.id, .complete(status: response.status, headers: response.headers, body: response.body))
                }
            default:
                if let problem = handle(frame) { return problem }
            }
        }
        return nil
    }

    /// A protocol problem, as an error.
    private struct Problem: Error {
        let text: String
    }

    /// The status and headers of a RESPONSE_HEAD frame.
    private static func head(of frame: WorkerFrame) -> Result<(status: Int, headers: [(String, String)]), Problem> {
        guard let head = ResponseHeadParser.parse(frame.payload) else {
            return .failure(Problem(text: "RESPONSE_HEAD that is not {\"status\": 100...999, \"headers\": [[name, value], ...]}"))
        }
        return .success(head)
    }

    /// Routes one frame; returns a problem when the frame breaks the protocol.
    private func handle(_ frame: WorkerFrame) -> String? {
        switch frame.kind {
        case .ready:
            guard let object = JSONValue.object(json: frame.payload), let ok = object["ok"]?.boolValue else { return "READY without {\"ok\":...}" }
            if ok {
                let waiter = state.withLock { state -> CheckedContinuation<WorkerStartError?, Never>? in
                    guard state.phase == .starting, state.startError == nil else { return nil }
                    state.phase = .ready
                    defer { state.readyWaiter = nil }
                    return state.readyWaiter
                }
                waiter?.resume(returning: nil)
            } else {
                let message = object["error"]?.stringValue ?? "the function's module did not load"
                failStart(WorkerStartError(message: message, location: object["location"]?.stringValue))
            }
        case .bodyPull:
            deliver(frame.id, .bodyPull)
        case .responseHead:
            switch Self.head(of: frame) {
            case .success(let head): deliver(frame.id, .head(status: head.status, headers: head.headers))
            case .failure(let problem): return problem.text
            }
        case .responseBody:
            deliver(frame.id, .body(frame.payload))
        case .responseEnd:
            deliver(frame.id, .end)
        case .error:
            let object = JSONValue.object(json: frame.payload)
            let message = object?["message"]?.stringValue ?? String(decoding: frame.payload, as: UTF8.self)
            deliver(frame.id, .error(message: message, stack: object?["stack"]?.stringValue))
        case .log:
            let object = JSONValue.object(json: frame.payload)
            let level = object?["level"]?.stringValue ?? "log"
            let message = object?["message"]?.stringValue ?? String(decoding: frame.payload, as: UTF8.self)
            let kernelID = frame.id == 0 ? "" : state.withLock { $0.routes[frame.id]?.kernelID } ?? ""
            onLog(kernelID, level, message)
        case .request, .body, .bodyEnd, .cancel, .credit, .drain:
            return "a host-to-worker frame type"
        }
        return nil
    }

    /// Hands an event to its request; frames for requests already ended (cancelled) are dropped.
    private func deliver(_ id: UInt32, _ event: WorkerEvent) {
        let route = state.withLock { $0.routes[id] }
        route?.continuation.yield(event)
    }

    // MARK: Ending

    /// Stdout ended: the process is dying or dead. Kill the group (in case it only closed
    /// stdout), read stderr to its end, reap, close, fail what was in flight, tell the pool.
    private func processEnded() async {
        kill(nil)
        await withCheckedContinuation { continuation in
            let done = state.withLock { state in
                if state.stderrDone { return true }
                state.stderrWaiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
        state.withLock { $0.reaping = true }
        // Polled, not a blocking waitpid: the SIGKILLed process may take a moment to release its memory.
        var status: CInt = 0
        var pause = Duration.milliseconds(1)
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { break }
            if result < 0 && errno == EINTR { continue }
            // ECHILD (nothing to wait for) ends it too.
            if result < 0 { break }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }
        closeDescriptor(stdoutDescriptor)
        closeDescriptor(stderrDescriptor)
        output.withLock { output in
            output.stdinClosed = true
            // Under the lock, as the writer's own close: the number cannot be closed (and reused) in between.
            if output.writerWaiting { loop.forget(stdinDescriptor) } else { closeDescriptor(stdinDescriptor) }
        }
        let ending = state.withLock { state in
            state.phase = .exited
            let routes = Array(state.routes.values)
            state.routes = [:]
            let waiters = state.exitWaiters
            state.exitWaiters = []
            let readyWaiter = state.readyWaiter
            state.readyWaiter = nil
            return (routes, waiters, readyWaiter, state.killReason, String(decoding: state.stderrTail, as: UTF8.self), state.startError)
        }
        let (routes, waiters, readyWaiter, killReason, tail, startError) = ending
        let how = Self.describe(status: status)
        let outOfMemory = tail.lowercased().contains(Self.outOfMemoryText)
        let trimmed = tail.trimmingCharacters(in: .whitespacesAndNewlines)
        // A death with V8's out-of-memory message is the memory limit.
        let failure =
            killReason
            ?? (outOfMemory
                ? .memory(function, limits) : .crashed(function, how + (trimmed.isEmpty ? "" : "; its last output: \(Self.lastLines(trimmed))")))
        // The pool takes the worker out of service first, so the requests failed below are not
        // retried (or followed) onto it.
        onExit(self)
        for route in routes {
            route.continuation.yield(.failed(failure))
            route.continuation.finish()
        }
        if let readyWaiter {
            readyWaiter.resume(
                returning: startError ?? WorkerStartError(message: "the worker \(how) before READY" + (trimmed.isEmpty ? "" : ": \(Self.lastLines(trimmed))")))
        }
        for waiter in waiters { waiter.resume() }
    }

    private static func describe(status: CInt) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
        return "was killed by signal \(signal)"
    }

    /// The last lines of stderr, at most about 1 KiB, for a message.
    private static func lastLines(_ text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).suffix(6)
        let joined = lines.joined(separator: " | ")
        return joined.count > 1024 ? String(joined.suffix(1024)) : joined
    }
}
