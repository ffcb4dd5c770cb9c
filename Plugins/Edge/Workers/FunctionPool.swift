import Foundation
import MeltyJSON
import MeltyPostgres
import Synchronization

/// The warm workers of one function version: schedules requests onto them, enforces the
/// version's limits (a monitor samples CPU time, memory and wall-clock time while requests
/// run), replaces workers that die or breach, and streams responses to the caller's sink.
///
/// One per deployed version; the plugin creates it with its event loop, calls ``prewarm()``
/// at deploy time and ``stop()`` when the version is retired. Every method may be called
/// from any task.
public final class FunctionPool: Sendable {
    /// The function's name (in messages and log lines).
    public let name: String
    /// How its workers start.
    public let launch: WorkerLaunch
    private let loop: PostgresEventLoop
    private let logSink: @Sendable (FunctionLogLine) -> Void
    private let usageSink: @Sendable (EdgeUsage) -> Void
    private let state = Mutex(State())

    private static let monitorInterval = Duration.milliseconds(40)
    /// Time a drained worker has to exit before it is killed.
    private static let drainGrace = Duration.seconds(2)

    private struct Slot {
        let worker: DenoWorker
        var ready = false
        /// False once it breached, is being recycled or the pool stops: no new requests.
        var accepting = true
        var inFlight = 0
        /// DRAIN was sent or it was killed.
        var retired = false
    }

    private enum Admission: Sendable {
        case worker(DenoWorker)
        case failure(EdgeFailure)
        case cancelled
    }

    private struct Waiter {
        let id: Int
        let continuation: CheckedContinuation<Admission, Never>
    }

    private struct State {
        var slots: [Int: Slot] = [:]
        /// Workers being started (before READY), counted against `max_workers`.
        var reserved = 0
        var waiters: [Waiter] = []
        var nextSerial = 1
        var nextWaiterID = 1
        var stopped = false
        var restarts = 0
        var invocations = 0
        var inFlight = 0
        var bootFailures = 0
        var monitorRunning = false
        /// Bumped whenever the pool goes idle: a scale-down only acts on the idle period it was started for.
        var idlePeriod = 0
    }

    /// A pool; no worker starts before ``prewarm()`` or the first ``invoke(_:body:response:)``.
    /// `logSink` is called on a worker's reader task for every line: it must not block (queue the line).
    /// `usageSink` receives what the workers used (CPU from READY on; memory × request time),
    /// for the Hub's metering; it must not block.
    public init(
        name: String, launch: WorkerLaunch, loop: PostgresEventLoop, usageSink: @escaping @Sendable (EdgeUsage) -> Void = { _ in },
        logSink: @escaping @Sendable (FunctionLogLine) -> Void
    ) {
        self.name = name
        self.launch = launch
        self.loop = loop
        self.usageSink = usageSink
        self.logSink = logSink
    }

    private var limits: EdgeLimits { launch.limits }

    /// The pool's counters now.
    public var stats: FunctionPoolStats {
        state.withLock { state in
            FunctionPoolStats(
                workers: state.slots.count, inFlight: state.inFlight, queued: state.waiters.count, restarts: state.restarts,
                invocations: state.invocations)
        }
    }

    // MARK: Starting workers

    /// Starts `warm_workers` workers (at least one) and waits until each answered READY: the
    /// deploy-time proof that the version boots. Throws the first worker's start error (call
    /// ``stop()`` then: the pool would keep retrying with backoff).
    public func prewarm() async throws(WorkerStartError) {
        let count = state.withLock { state -> Int in
            guard !state.stopped else { return 0 }
            let needed = min(max(1, limits.warmWorkers) - activeWorkers(state), limits.maxWorkers - activeWorkers(state))
            let count = max(0, needed)
            state.reserved += count
            return count
        }
        let errors = await withTaskGroup(of: WorkerStartError?.self) { group in
            for _ in 0..<count { group.addTask { await self.startReservedWorker() } }
            var errors: [WorkerStartError] = []
            for await error in group { if let error { errors.append(error) } }
            return errors
        }
        if let first = errors.first { throw first }
        if state.withLock({ $0.stopped }) { throw WorkerStartError(message: "the pool of function \"\(name)\" is stopped") }
    }

    /// Workers serving or about to: started and accepting, or reserved.
    private func activeWorkers(_ state: State) -> Int {
        state.reserved + state.slots.values.count { $0.ready && $0.accepting }
    }

    /// Starts the workers the pool lacks: `warm_workers`, and one more when requests wait and
    /// no worker being started will take them. Repeated boot failures back off (up to 10 s).
    private func rebalance() {
        let (count, delay) = state.withLock { state -> (Int, Duration) in
            guard !state.stopped else { return (0, .zero) }
            let active = activeWorkers(state)
            var needed = max(0, limits.warmWorkers - active)
            let freeSlots = state.slots.values.reduce(0) { $0 + ($1.ready && $1.accepting ? max(0, limits.maxConcurrentPerWorker - $1.inFlight) : 0) }
            if state.waiters.count > freeSlots + state.reserved * limits.maxConcurrentPerWorker { needed = max(needed, 1) }
            needed = max(0, min(needed, limits.maxWorkers - active))
            state.reserved += needed
            let backoff = state.bootFailures == 0 ? Duration.zero : .milliseconds(100 * (1 << min(state.bootFailures - 1, 7)))
            return (needed, min(backoff, .seconds(10)))
        }
        for _ in 0..<count {
            Task {
                if delay > .zero { try? await Task.sleep(for: delay) }
                _ = await self.startReservedWorker()
            }
        }
    }

    /// Starts one worker for a reservation already counted in `reserved`; nil once it is ready.
    private func startReservedWorker() async -> WorkerStartError? {
        let serial: Int? = state.withLock { state in
            guard !state.stopped else {
                state.reserved -= 1
                return nil
            }
            defer { state.nextSerial += 1 }
            return state.nextSerial
        }
        guard let serial else { return WorkerStartError(message: "the pool of function \"\(name)\" is stopped") }
        let worker: DenoWorker
        do {
            worker = try DenoWorker.spawn(
                function: name, serial: serial, launch: launch, loop: loop,
                onLog: { [weak self] requestID, level, message in self?.log(requestID, level, message) },
                onExit: { [weak self] worker in self?.workerExited(worker) })
        } catch {
            return startFailed(error)
        }
        let registered = state.withLock { state in
            guard !state.stopped else { return false }
            state.slots[serial] = Slot(worker: worker)
            return true
        }
        guard registered else {
            worker.kill(nil)
            await worker.waitForExit()
            state.withLock { $0.reserved -= 1 }
            return WorkerStartError(message: "the pool of function \"\(name)\" is stopped")
        }
        do {
            try await worker.waitUntilReady(timeout: .milliseconds(Int(launch.startTimeoutSeconds * 1000)))
            worker.meter.start(worker.usage)
        } catch {
            state.withLock { _ = $0.slots.removeValue(forKey: serial) }
            return startFailed(error)
        }
        let resumes = state.withLock { state -> [(CheckedContinuation<Admission, Never>, Admission)]? in
            state.reserved -= 1
            // It died between READY and here: workerExited already removed it.
            guard var slot = state.slots[serial] else { return nil }
            state.bootFailures = 0
            slot.ready = true
            slot.accepting = !state.stopped
            state.slots[serial] = slot
            return dispatch(&state)
        }
        guard let resumes else {
            rebalance()
            return WorkerStartError(message: "the worker exited right after READY: \(worker.stderrTail)")
        }
        for (continuation, admission) in resumes { continuation.resume(returning: admission) }
        return nil
    }

    private func startFailed(_ error: WorkerStartError) -> WorkerStartError {
        let failed = state.withLock { state -> [Waiter] in
            state.reserved -= 1
            state.bootFailures += 1
            // Nothing left to serve the waiting requests: answer them now rather than after a backoff.
            guard activeWorkers(state) == 0 else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        let failure = EdgeFailure.unavailable(name, "its worker did not start: \(error)")
        for waiter in failed { waiter.continuation.resume(returning: .failure(failure)) }
        // A start cut short by stop() is no news.
        if !state.withLock({ $0.stopped }) {
            logSink(FunctionLogLine(function: name, requestID: "", level: "error", message: "worker did not start: \(error)"))
        }
        rebalance()
        return error
    }

    private func workerExited(_ worker: DenoWorker) {
        state.withLock { state in
            guard let slot = state.slots.removeValue(forKey: worker.serial) else { return }
            if slot.ready && !state.stopped { state.restarts += 1 }
        }
        rebalance()
    }

    // MARK: Scheduling

    /// The ready, accepting worker with the fewest requests and a free slot.
    private func leastLoaded(_ state: State) -> Int? {
        state.slots.filter { $0.value.ready && $0.value.accepting && $0.value.inFlight < limits.maxConcurrentPerWorker }
            .min { $0.value.inFlight < $1.value.inFlight }?.key
    }

    private func reserveSlot(_ serial: Int, _ state: inout State) -> DenoWorker? {
        guard var slot = state.slots[serial] else { return nil }
        slot.inFlight += 1
        state.slots[serial] = slot
        state.inFlight += 1
        return slot.worker
    }

    /// Hands free slots to waiting requests, oldest first.
    private func dispatch(_ state: inout State) -> [(CheckedContinuation<Admission, Never>, Admission)] {
        var resumes: [(CheckedContinuation<Admission, Never>, Admission)] = []
        while !state.waiters.isEmpty, let serial = leastLoaded(state), let worker = reserveSlot(serial, &state) {
            resumes.append((state.waiters.removeFirst().continuation, .worker(worker)))
        }
        return resumes
    }

    private func acquire() async -> Admission {
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Admission, Never>) in
                let (immediate, mustStart) = state.withLock { state -> (Admission?, Bool) in
                    if state.stopped { return (.failure(.unavailable(name, "the function is being stopped or redeployed")), false) }
                    if state.waiters.isEmpty, let serial = leastLoaded(state), let worker = reserveSlot(serial, &state) {
                        return (.worker(worker), false)
                    }
                    let canStart = activeWorkers(state) < limits.maxWorkers
                    guard state.waiters.count < limits.maxQueued || canStart else { return (.failure(.concurrency(name, limits)), false) }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return (nil, canStart)
                }
                if let immediate {
                    continuation.resume(returning: immediate)
                    return
                }
                if mustStart { rebalance() }
                // Cancelled before the waiter was in place: the handler found nothing to end.
                if Task.isCancelled { removeWaiter(id) }
            }
        } onCancel: {
            removeWaiter(id)
        }
    }

    private func removeWaiter(_ id: Int) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(returning: .cancelled)
    }

    private func release(_ worker: DenoWorker) {
        let (resumes, drain) = state.withLock { state -> ([(CheckedContinuation<Admission, Never>, Admission)], Bool) in
            state.inFlight -= 1
            guard var slot = state.slots[worker.serial] else { return (dispatch(&state), false) }
            slot.inFlight -= 1
            var drain = false
            if !slot.accepting && slot.inFlight == 0 && !slot.retired {
                slot.retired = true
                drain = true
            }
            state.slots[worker.serial] = slot
            return (dispatch(&state), drain)
        }
        for (continuation, admission) in resumes { continuation.resume(returning: admission) }
        if drain { drainThenKill(worker) }
    }

    private func drainThenKill(_ worker: DenoWorker) {
        worker.drain()
        Task {
            try? await Task.sleep(for: Self.drainGrace)
            worker.kill(nil)
        }
    }

    /// Takes no more requests on `worker`; it is drained once idle and replaced now.
    private func retire(_ worker: DenoWorker) {
        let drainNow = state.withLock { state -> Bool in
            guard var slot = state.slots[worker.serial], slot.accepting else { return false }
            slot.accepting = false
            let idle = slot.inFlight == 0 && !slot.retired
            if idle { slot.retired = true }
            state.slots[worker.serial] = slot
            return idle
        }
        if drainNow { drainThenKill(worker) }
        rebalance()
    }

    /// Kills `worker` for a breach: its requests fail with `failure`; the next request goes elsewhere.
    private func killForBreach(_ worker: DenoWorker, _ failure: EdgeFailure) {
        state.withLock { state in
            guard var slot = state.slots[worker.serial] else { return }
            slot.accepting = false
            slot.retired = true
            state.slots[worker.serial] = slot
        }
        worker.kill(failure)
        rebalance()
    }

    // MARK: Limits

    private func startMonitorIfNeeded() {
        let start = state.withLock { state -> Bool in
            guard !state.monitorRunning, state.inFlight > 0, !state.stopped else { return false }
            state.monitorRunning = true
            return true
        }
        if start { Task { await self.monitor() } }
    }

    /// Samples the workers that run requests every 40 ms; ends when none does.
    private func monitor() async {
        while true {
            try? await Task.sleep(for: Self.monitorInterval)
            let busy = state.withLock { state -> [DenoWorker]? in
                guard state.inFlight > 0, !state.stopped else {
                    // Going idle: what the last short requests used is reported now.
                    let ready = state.slots.values.filter(\.ready).map(\.worker)
                    Task { self.reportCPU(of: ready) }
                    state.monitorRunning = false
                    state.idlePeriod += 1
                    let period = state.idlePeriod
                    Task { await self.scaleDown(after: .seconds(self.limits.idleSeconds), period: period) }
                    return nil
                }
                return state.slots.values.filter { $0.inFlight > 0 && $0.ready }.map(\.worker)
            }
            guard let busy else { return }
            for worker in busy { check(worker) }
        }
    }

    /// After an idle period of `delay` (no request ran meanwhile), drains the idle workers
    /// beyond `warm_workers` that a burst started, so a quiet function holds only its warm ones.
    private func scaleDown(after delay: Duration, period: Int) async {
        try? await Task.sleep(for: delay)
        let surplus = state.withLock { state -> [DenoWorker] in
            guard state.idlePeriod == period, !state.monitorRunning, state.inFlight == 0, state.waiters.isEmpty, !state.stopped else { return [] }
            let idle = state.slots.filter { $0.value.ready && $0.value.accepting && $0.value.inFlight == 0 && !$0.value.retired }
                .sorted { $0.key < $1.key }
            let extra = idle.dropFirst(limits.warmWorkers)
            for (serial, _) in extra {
                state.slots[serial]?.accepting = false
                state.slots[serial]?.retired = true
            }
            return extra.map(\.value.worker)
        }
        for worker in surplus { drainThenKill(worker) }
    }

    /// Reports the CPU `workers` used since their last report.
    private func reportCPU(of workers: [DenoWorker]) {
        var cpu = 0
        for worker in workers { if let usage = worker.usage { cpu += worker.meter.cpuSinceLastReport(usage) } }
        if cpu > 0 { usageSink(EdgeUsage(cpuMilliseconds: cpu)) }
    }

    private func check(_ worker: DenoWorker) {
        let requests = worker.inFlight
        guard !requests.isEmpty else { return }
        if let usage = worker.usage {
            worker.recordBaselines(cpuMilliseconds: usage.cpuMilliseconds)
            let cpu = worker.meter.cpuSinceLastReport(usage)
            if cpu > 0 { usageSink(EdgeUsage(cpuMilliseconds: cpu)) }
            // CPU since the oldest request in flight started (a worker serves several at once).
            let baseline = requests.compactMap(\.cpuAtStart).min() ?? usage.cpuMilliseconds
            let used = usage.cpuMilliseconds - baseline
            if used > limits.cpuHardMilliseconds {
                killForBreach(worker, .cpu(name, limits))
                return
            }
            if usage.residentBytes / (1 << 20) > limits.memoryMegabytes {
                killForBreach(worker, .memory(name, limits))
                return
            }
            if used > limits.cpuSoftMilliseconds { retire(worker) }
        }
        let now = ContinuousClock.now
        for request in requests where now - request.started > .seconds(limits.wallClockSeconds) {
            worker.fail(request.id, .wallClock(name, limits))
            retire(worker)
        }
    }

    // MARK: Invoking

    /// Runs `request` on a worker up to its response head, in the calling task: a response
    /// that came whole is returned whole; a streamed one returns its head and a
    /// ``StreamingResponse`` that sends the rest. Never throws (see ``InvocationStart``).
    /// Cancelling the calling task (the client went away) cancels the function's request.
    public func start(_ request: InvocationRequest, body: @escaping RequestBodySource) async -> InvocationStart {
        state.withLock { $0.invocations += 1 }
        guard !Task.isCancelled else { return .clientGone }
        // A worker can die between being chosen and taking the request (nothing was sent yet):
        // the request then goes to another one.
        for _ in 0..<3 {
            let worker: DenoWorker
            switch await acquire() {
            case .cancelled: return .clientGone
            case .failure(let failure): return .failed(failure)
            case .worker(let acquired): worker = acquired
            }
            startMonitorIfNeeded()
            let started = ContinuousClock.now
            let requestID = request.requestID
            let exchange = WorkerExchange(request, body: body, on: worker, function: name) { [self] outcome in
                finished(worker, started: started, requestID: requestID, outcome: outcome)
            }
            guard let exchange else {
                release(worker)
                state.withLock { $0.slots[worker.serial]?.accepting = false }
                continue
            }
            if let refusal = exchange.send(request) {
                exchange.close(.failed(refusal))
                return .failed(refusal)
            }
            return await exchange.untilHead()
        }
        let failure = EdgeFailure.crashed(name, "it ended before the request started")
        logSink(FunctionLogLine(function: name, requestID: request.requestID, level: "error", message: failure.description))
        return .failed(failure)
    }

    /// Runs `request` and sends its whole response to `response` (``start(_:body:)``, then
    /// the streamed body if any). The outcome says what was sent (see ``InvocationOutcome``).
    public func invoke(_ request: InvocationRequest, body: @escaping RequestBodySource, response: some ResponseSink) async -> InvocationOutcome {
        switch await start(request, body: body) {
        case .whole(let status, let headers, let body):
            await response.whole(status: status, headers: headers, body: body)
            return .completed(status: status, bodyBytes: body.count)
        case .streaming(let status, let headers, let stream):
            await response.head(status: status, headers: headers)
            return await stream.send(to: response)
        case .failed(let failure):
            return .failed(failure)
        case .clientGone:
            return .clientGone
        }
    }

    /// A request on `worker` is over: its slot is free, its memory time metered, a failure logged.
    private func finished(_ worker: DenoWorker, started: ContinuousClock.Instant, requestID: String, outcome: InvocationOutcome) {
        release(worker)
        let elapsed = ContinuousClock.now - started
        let milliseconds = Int(elapsed.components.seconds) * 1000 + Int(elapsed.components.attoseconds / 1_000_000_000_000_000)
        usageSink(EdgeUsage(megabyteMilliseconds: worker.meter.residentMegabytes * milliseconds))
        switch outcome {
        case .failed(let failure), .aborted(let failure):
            // Every failure is in the function's log under its request, whatever the client saw.
            logSink(FunctionLogLine(function: name, requestID: requestID, level: "error", message: failure.description))
        case .completed, .clientGone: break
        }
    }

    /// The REQUEST frame's JSON, written directly (no encoder on the hot path):
    /// `{"method","url","headers":[[name,value],...],"request_id","body"}`.
    public static func requestHead(_ request: InvocationRequest) -> [UInt8] {
        var json: [UInt8] = []
        json.reserveCapacity(256 + request.url.utf8.count + request.headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 6 })
        json += Array(#"{"method":"#.utf8)
        JSONStringWriter.append(request.method.utf8, to: &json)
        json += Array(#","url":"#.utf8)
        JSONStringWriter.append(request.url.utf8, to: &json)
        json += Array(#","headers":["#.utf8)
        for (index, header) in request.headers.enumerated() {
            json += index == 0 ? [UInt8(ascii: "[")] : Array(",[".utf8)
            JSONStringWriter.append(header.0.utf8, to: &json)
            json.append(UInt8(ascii: ","))
            JSONStringWriter.append(header.1.utf8, to: &json)
            json.append(UInt8(ascii: "]"))
        }
        json += Array(#"],"request_id":"#.utf8)
        JSONStringWriter.append(request.requestID.utf8, to: &json)
        let body = request.body != nil ? #","body":true,"pushed":true}"# : request.hasBody ? #","body":true}"# : #","body":false}"#
        json += Array(body.utf8)
        return json
    }

    private func log(_ requestID: String, _ level: String, _ message: String) {
        logSink(FunctionLogLine(function: name, requestID: requestID, level: level, message: message))
    }

    // MARK: Stopping

    /// Refuses new requests, lets those in flight finish for `grace`, then kills every worker
    /// and returns once all are reaped (none is left running).
    public func stop(grace: Duration = .seconds(5)) async {
        let (workers, waiters) = state.withLock { state -> ([DenoWorker], [Waiter]) in
            state.stopped = true
            for serial in state.slots.keys { state.slots[serial]?.accepting = false }
            defer { state.waiters = [] }
            return (state.slots.values.map(\.worker), state.waiters)
        }
        for waiter in waiters { waiter.continuation.resume(returning: .failure(.unavailable(name, "the function is being stopped or redeployed"))) }
        for worker in workers { worker.drain() }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, workers.contains(where: { !$0.hasExited }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let stopped = EdgeFailure.unavailable(name, "the function was stopped while this request ran")
        while true {
            // Workers registered meanwhile by a start in progress are included here.
            let (remaining, reserved) = state.withLock { state in (state.slots.values.map(\.worker), state.reserved) }
            for worker in remaining + workers { worker.kill(stopped) }
            for worker in remaining + workers { await worker.waitForExit() }
            if reserved == 0 && state.withLock({ $0.slots.isEmpty }) { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
