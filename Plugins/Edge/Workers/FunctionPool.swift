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

    /// The head is held until the first chunk of body (or its end) arrived: a response whose
    /// first chunk (the whole body of most responses; the runner sends at most 64 KiB per
    /// chunk) is over `max_response_bytes` is answered as a clean JSON failure, and a
    /// streamed response reaches the client from its first chunk on.
    static let headHoldBytes = 1
    /// The largest BODY frame sent to a worker (a larger chunk is sent over several pulls).
    static let bodyFrameBytes = 256 * 1024
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

    /// Runs `request` on a worker and streams its response to `response`. Never throws: the
    /// outcome says what was sent (see ``InvocationOutcome``). Cancelling the calling task
    /// (the client went away) cancels the function's request.
    public func invoke(_ request: InvocationRequest, body: @escaping RequestBodySource, response: some ResponseSink) async -> InvocationOutcome {
        state.withLock { $0.invocations += 1 }
        guard !Task.isCancelled else { return .clientGone }
        var outcome = InvocationOutcome.failed(.crashed(name, "it ended before the request started"))
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
            let result = await exchange(request, body: body, response: response, on: worker)
            release(worker)
            let elapsed = ContinuousClock.now - started
            let milliseconds = Int(elapsed.components.seconds) * 1000 + Int(elapsed.components.attoseconds / 1_000_000_000_000_000)
            usageSink(EdgeUsage(megabyteMilliseconds: worker.meter.residentMegabytes * milliseconds))
            guard let result else {
                state.withLock { $0.slots[worker.serial]?.accepting = false }
                continue
            }
            outcome = result
            break
        }
        switch outcome {
        case .failed(let failure), .aborted(let failure):
            // Every failure is in the function's log under its request, whatever the client saw.
            logSink(FunctionLogLine(function: name, requestID: request.requestID, level: "error", message: failure.description))
        case .completed, .clientGone: break
        }
        return outcome
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

    /// The frames of one request on one worker; nil when the worker was gone before the request was sent.
    private func exchange(_ request: InvocationRequest, body: @escaping RequestBodySource, response: some ResponseSink, on worker: DenoWorker) async -> InvocationOutcome? {
        guard let (id, events) = worker.begin(kernelID: request.requestID) else { return nil }
        defer { worker.finish(id) }
        let payload = Self.requestHead(request)
        guard payload.count <= WorkerFrame.maxPayload else {
            return .failed(
                EdgeFailure(.requestTooLarge, message: "the request's URL and headers are larger than 1 MiB", hint: "send fewer or shorter headers"))
        }
        if let whole = request.body {
            // Pushed: the REQUEST, the whole body and its end leave in one write.
            var frames = [WorkerFrame(.request, id: id, payload: payload)]
            var offset = 0
            while offset < whole.count {
                let end = min(whole.count, offset + Self.bodyFrameBytes)
                frames.append(WorkerFrame(.body, id: id, payload: Array(whole[offset..<end])))
                offset = end
            }
            frames.append(WorkerFrame(.bodyEnd, id: id))
            worker.send(frames)
        } else {
            worker.send(WorkerFrame(.request, id: id, payload: payload))
        }

        let pushed = request.body != nil
        let feeder = BodyFeeder(
            worker: worker, id: id, body: body, hasBody: request.hasBody && !pushed, limit: limits.maxRequestBytes, function: name)
        var responseHead: (status: Int, headers: [(String, String)])?
        var headSent = false
        var held: [UInt8] = []
        var responseBytes = 0

        func fail(_ failure: EdgeFailure) async -> InvocationOutcome {
            guard headSent else { return .failed(failure) }
            await response.abort(failure)
            return .aborted(failure)
        }
        func clientGone() -> InvocationOutcome {
            worker.send(WorkerFrame(.cancel, id: id))
            return .clientGone
        }

        for await event in events {
            switch event {
            case .bodyPull where pushed:
                worker.kill(.crashed(name, "it broke the worker protocol (BODY_PULL for a body pushed whole)"))
            case .bodyPull:
                // Answered beside the response: a function may stream its answer while it
                // still reads its body (a duplex echo), and the client may wait for that answer
                // before it sends more.
                Task { await feeder.answerPull() }
            case .clientGone:
                return clientGone()
            case .head(let status, let headers):
                if responseHead == nil { responseHead = (status, headers) }
            case .body(let chunk):
                guard let head = responseHead else {
                    worker.kill(.crashed(name, "it broke the worker protocol (RESPONSE_BODY before RESPONSE_HEAD)"))
                    continue
                }
                guard chunk.count <= limits.maxResponseBytes - responseBytes else {
                    worker.send(WorkerFrame(.cancel, id: id))
                    return await fail(.responseTooLarge(name, limits))
                }
                responseBytes += chunk.count
                if headSent {
                    guard await response.write(chunk) else { return clientGone() }
                    worker.send(WorkerFrame(.credit, id: id))
                } else {
                    // Held, not yet written: credited at once.
                    held += chunk
                    worker.send(WorkerFrame(.credit, id: id))
                    if held.count >= Self.headHoldBytes {
                        await response.head(status: head.status, headers: head.headers)
                        headSent = true
                        let accepted = await response.write(held)
                        held = []
                        guard accepted else { return clientGone() }
                    }
                }
            case .end:
                guard let head = responseHead else {
                    return .failed(
                        EdgeFailure(
                            .functionError, message: "function \"\(name)\" ended its response without a status",
                            hint: "return a Response from the handler"))
                }
                if !headSent {
                    await response.head(status: head.status, headers: head.headers)
                    headSent = true
                    if !held.isEmpty {
                        guard await response.write(held) else { return clientGone() }
                    }
                }
                await response.end()
                return .completed(status: head.status, bodyBytes: responseBytes)
            case .complete(let status, let headers, let body):
                guard responseHead == nil else {
                    worker.kill(.crashed(name, "it broke the worker protocol (a second RESPONSE_HEAD)"))
                    continue
                }
                guard body.count <= limits.maxResponseBytes else { return await fail(.responseTooLarge(name, limits)) }
                await response.whole(status: status, headers: headers, body: body)
                return .completed(status: status, bodyBytes: body.count)
            case .error(let message, let stack):
                return await fail(
                    EdgeFailure(
                        .functionError, message: "function \"\(name)\" threw: \(message)", hint: "read the stack and the function's logs",
                        stack: stack))
            case .failed(let failure):
                return await fail(failure)
            }
        }
        // The events end without an answer only when the task was cancelled (or the worker vanished).
        if Task.isCancelled { return clientGone() }
        return await fail(.crashed(name, "it stopped answering"))
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

/// Answers one request's BODY_PULLs (the worker pulls again only once a pull was answered,
/// so one answer runs at a time): the next chunk from the client, split to the frame size,
/// or BODY_END; past `max_request_bytes`, or when the client is gone, the request ends.
private final class BodyFeeder: Sendable {
    private struct State {
        var pending: ArraySlice<UInt8> = []
        var ended: Bool
        var received = 0
    }
    private let worker: DenoWorker
    private let id: UInt32
    private let body: RequestBodySource
    private let limit: Int
    private let function: String
    private let state: Mutex<State>

    init(worker: DenoWorker, id: UInt32, body: @escaping RequestBodySource, hasBody: Bool, limit: Int, function: String) {
        self.worker = worker
        self.id = id
        self.body = body
        self.limit = limit
        self.function = function
        state = Mutex(State(ended: !hasBody))
    }

    func answerPull() async {
        let needsChunk = state.withLock { $0.pending.isEmpty && !$0.ended }
        if needsChunk {
            var chunk: [UInt8]?
            do {
                repeat { chunk = try await body() } while chunk?.isEmpty == true
            } catch {
                worker.clientLeft(id)
                return
            }
            let tooLarge = state.withLock { state -> Bool in
                guard let chunk else {
                    state.ended = true
                    return false
                }
                guard chunk.count <= limit - state.received else { return true }
                state.received += chunk.count
                state.pending = chunk[...]
                return false
            }
            if tooLarge {
                var limits = EdgeLimits()
                limits.maxRequestBytes = limit
                worker.fail(id, .requestTooLarge(function, limits))
                return
            }
        }
        let piece = state.withLock { state -> [UInt8]? in
            guard !state.pending.isEmpty else { return nil }
            let piece = state.pending.prefix(FunctionPool.bodyFrameBytes)
            state.pending = state.pending.dropFirst(piece.count)
            return Array(piece)
        }
        if let piece {
            worker.send(WorkerFrame(.body, id: id, payload: piece))
        } else {
            worker.send(WorkerFrame(.bodyEnd, id: id))
        }
    }
}
