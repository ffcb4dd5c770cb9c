import Foundation
import MeltyPostgres
import Synchronization

/// Streams one portal database's committed changes of the `supabase_realtime` publication
/// to a handler, one call per transaction. One feed per portal per kernel; of all kernels
/// exactly one streams (it holds a session advisory lock derived from the slot name on a
/// dedicated connection); the others try every ``Options/leaderRetry`` and take over when
/// the holder's connection closes (a dead kernel's lock ends with its connection).
///
/// Delivery is at least once: a transaction's commit is acknowledged to the slot only after
/// the handler returned, so after a crash or a takeover the stream resumes at the slot's
/// confirmed position and nothing committed is lost (the handler may see a transaction
/// again). Errors reconnect after a capped backoff.
public final class ChangeFeed: Sendable {
    /// Timing of leadership and reconnects.
    public struct Options: Sendable {
        /// How often a follower tries to take the lock.
        public var leaderRetry: Duration
        /// Delays after consecutive failures; the last one repeats. Reset by a delivered transaction.
        public var backoff: [Duration]
        /// The publication streamed.
        public var publication: String
        /// Most changes handed over in one call: transactions that have already arrived
        /// when one commits are gathered into one call up to this many changes (whole
        /// transactions only), so the handler's per-call cost (a visibility query for every
        /// audience) is paid once for many. 1 hands over each transaction alone.
        public var maxChangesPerCall = 1

        /// The defaults: retry the lock every second; back off 0.5, 1, 2, then every 5 seconds;
        /// one transaction per call.
        public init(
            leaderRetry: Duration = .seconds(1), backoff: [Duration] = [.milliseconds(500), .seconds(1), .seconds(2), .seconds(5)], publication: String = "supabase_realtime",
            maxChangesPerCall: Int = 1
        ) {
            self.leaderRetry = leaderRetry
            self.backoff = backoff.isEmpty ? [.seconds(1)] : backoff
            self.publication = publication
            self.maxChangesPerCall = max(1, maxChangesPerCall)
        }
    }

    /// What the feed is doing (for health pages and tests).
    public enum Phase: Sendable, Equatable {
        /// Not started, or stopped.
        case stopped
        /// Waiting for the leadership lock (another kernel streams).
        case following
        /// Holding the lock, creating the slot or opening the stream.
        case leading
        /// Holding the lock with the stream open: every change committed from now on (the
        /// slot exists) reaches the handler.
        case streaming
        /// Waiting to reconnect after `error`.
        case backingOff(error: String)
    }

    private struct State {
        var task: Task<Void, Never>?
        var phase: Phase = .stopped
        var conninfo = ""
        var slot = ""
        /// Transactions handed to the handler since start.
        var delivered = 0
    }

    private let loop: PostgresEventLoop
    private let options: Options
    private let state = Mutex(State())

    /// A feed whose connections run on `loop`.
    public init(loop: PostgresEventLoop, options: Options = Options()) {
        self.loop = loop
        self.options = options
    }

    /// What the feed is doing now.
    public var phase: Phase { state.withLock { $0.phase } }

    /// Whether this feed holds the slot (streams).
    public var isLeader: Bool { phase == .leading || phase == .streaming }

    /// Transactions delivered to the handler since ``start(conninfo:slot:handler:)``.
    public var deliveredTransactions: Int { state.withLock { $0.delivered } }

    /// The slot name for a portal: `realtime_<portal>` made a valid slot name (lowercase
    /// letters, digits and `_`, at most 63 bytes).
    public static func slotName(portal: String) -> String {
        let cleaned = String(portal.lowercased().unicodeScalars.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "_" })
        let name = "realtime_" + cleaned
        guard name.utf8.count > 63 else { return name }
        return String(name.prefix(46)) + "_" + String(lockKey(slot: name).magnitude, radix: 16).prefix(16)
    }

    /// The advisory lock key of `slot`'s leadership (FNV-1a 64 of a namespaced name).
    public static func lockKey(slot: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in ("meltybase.realtime.slot:" + slot).utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }

    /// Starts following or leading `slot` in the database of `conninfo` (a role that may use
    /// replication and own the slot); `handler` gets each transaction's changes, in commit
    /// order, one call at a time. Starting a started feed does nothing.
    public func start(conninfo: String, slot: String, handler: @escaping @Sendable ([RowChange]) async -> Void) {
        state.withLock { state in
            guard state.task == nil else { return }
            state.conninfo = conninfo
            state.slot = slot
            state.phase = .following
            state.task = Task { [self] in await run(conninfo: conninfo, slot: slot, handler: handler) }
        }
    }

    /// Stops streaming and gives up leadership (another kernel takes over). Changes whose
    /// handler call did not finish are not acknowledged and come again to the next leader.
    public func stop() async {
        let (task, conninfo, slot) = state.withLock { state in (state.task, state.conninfo, state.slot) }
        guard let task else { return }
        task.cancel()
        // A reader waiting on the replication socket does not see cancellation: end its
        // walsender (only while leading: the slot is then ours) until the task is done.
        let finished = Mutex(false)
        let waiter = Task {
            await task.value
            finished.withLock { $0 = true }
        }
        while !finished.withLock({ $0 }) {
            if isLeader { await Self.endWalsender(slot: slot, conninfo: conninfo, loop: loop) }
            try? await Task.sleep(for: .milliseconds(50))
        }
        await waiter.value
        state.withLock { state in
            state.task = nil
            state.phase = .stopped
        }
    }

    /// Drops `slot` (the portal's Realtime is removed), ending a walsender still using it.
    /// Stop the feeds first; no error when the slot does not exist.
    public static func dropSlot(_ slot: String, conninfo: String, loop: PostgresEventLoop) async throws {
        var lastError: (any Error)?
        for _ in 0..<50 {
            do {
                try await LogicalReplicationStream.dropSlot(slot, conninfo: conninfo, loop: loop)
                return
            } catch let error as PostgresError where error.sqlState == "55006" {
                // Still active: a walsender is finishing.
                lastError = error
                await endWalsender(slot: slot, conninfo: conninfo, loop: loop)
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        if let lastError { throw lastError }
    }

    private static func endWalsender(slot: String, conninfo: String, loop: PostgresEventLoop) async {
        guard let connection = try? await PostgresConnection.connect(conninfo, on: loop) else { return }
        defer { connection.close() }
        _ = try? await connection.query(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", [slot])
    }

    private func setPhase(_ phase: Phase) {
        state.withLock { state in
            if state.phase != .stopped || phase == .stopped { state.phase = phase }
        }
    }

    private func run(conninfo: String, slot: String, handler: @escaping @Sendable ([RowChange]) async -> Void) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await lead(conninfo: conninfo, slot: slot, failures: &failures, handler: handler)
            } catch {
                if Task.isCancelled { break }
                setPhase(.backingOff(error: String(describing: error)))
                let delay = options.backoff[min(failures, options.backoff.count - 1)]
                failures += 1
                try? await Task.sleep(for: delay)
            }
        }
        setPhase(.following)
    }

    /// Takes the lock (waiting as a follower), then streams until an error or cancellation
    /// (it always ends by throwing); a delivered transaction resets `failures`.
    private func lead(conninfo: String, slot: String, failures: inout Int, handler: @Sendable ([RowChange]) async -> Void) async throws {
        let lock = try await PostgresConnection.connect(conninfo, on: loop)
        // Closing the connection releases the session lock.
        defer { lock.close() }
        let key = String(Self.lockKey(slot: slot))
        while try await lock.query("SELECT pg_try_advisory_lock($1::int8)", [key]).scalar != "t" {
            setPhase(.following)
            try await Task.sleep(for: options.leaderRetry)
        }
        try Task.checkCancellation()
        setPhase(.leading)
        // A slot that fell further behind than max_slot_wal_keep_size (the portal's Realtime
        // was off a long time) was invalidated by the server and can never stream again:
        // the changes it missed are gone either way, so start over with a new one.
        if try await lock.query("SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", [slot]).scalar == "lost" {
            try await Self.dropSlot(slot, conninfo: conninfo, loop: loop)
        }
        if try await lock.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [slot]).rows.isEmpty {
            do {
                try await LogicalReplicationStream.createSlot(slot, conninfo: conninfo, loop: loop)
            } catch let error as PostgresError where error.sqlState == "42710" {
                // Created meanwhile (by a kernel that held the lock before us).
            }
        }
        try Task.checkCancellation()
        let stream = try await LogicalReplicationStream.open(conninfo: conninfo, slot: slot, publications: [options.publication], loop: loop)
        defer { stream.close() }
        setPhase(.streaming)
        var decoder = ChangeDecoder()
        // The open transaction's changes, and whole transactions received but not yet handed over.
        var current: [RowChange] = []
        var pending: [RowChange] = []
        var pendingTransactions = 0
        var pendingEnd: LSN?
        var transactionOpen = false
        var timestamp = ""
        var transactionID: UInt32 = 0
        let limit = max(1, options.maxChangesPerCall)
        while true {
            let event: LogicalReplicationStream.Event
            if transactionOpen || pendingEnd == nil {
                guard let next = try await stream.next() else { break }
                event = next
            } else if pending.count < limit, let next = try await stream.nextIfAvailable() {
                event = next
            } else {
                // Nothing more has arrived (or the batch is full): hand over, then acknowledge.
                if !pending.isEmpty {
                    await handler(pending)
                    // A handler cut short by stop() may not have delivered: leave it unacknowledged.
                    try Task.checkCancellation()
                    state.withLock { $0.delivered += pendingTransactions }
                    failures = 0
                }
                if let end = pendingEnd { try await stream.acknowledge(end) }
                pending.removeAll(keepingCapacity: true)
                pendingTransactions = 0
                pendingEnd = nil
                continue
            }
            try Task.checkCancellation()
            switch event.message {
            case .begin(_, let commitTime, let xid):
                transactionOpen = true
                current.removeAll(keepingCapacity: true)
                timestamp = RowChange.timestamp(commitTime)
                transactionID = xid
            case .relation(let relation):
                try await decoder.learn(relation, catalog: lock)
            case .insert, .update, .delete:
                if var change = decoder.change(event.message, commitTimestamp: timestamp) {
                    change.transactionID = transactionID
                    current.append(change)
                }
            case .commit(_, let end, _):
                transactionOpen = false
                if !current.isEmpty {
                    pending += current
                    pendingTransactions += 1
                }
                current.removeAll(keepingCapacity: true)
                pendingEnd = end
            default:
                break
            }
        }
        throw PostgresError(sqlState: nil, message: "the server ended the replication stream of slot \(slot)")
    }
}
