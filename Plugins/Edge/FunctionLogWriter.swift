import EdgeCore
import EdgeWorkers
import Foundation
import MeltyPluginSDK
import Synchronization

/// Collects functions' log lines and writes them to the store in batches (once a second, or
/// at 500 lines), and purges old ones hourly. Logging never waits for the database: past
/// 10,000 unwritten lines new ones are dropped and counted (`edge_log_lines_dropped`).
final class FunctionLogWriter: Sendable {
    static let maxPending = 10_000
    static let batch = 500

    private let store: FunctionStore
    private let settings: EdgeSettings
    private let host: PluginHostServices
    private let pending = Mutex<[EdgeCore.FunctionLogLine]>([])
    private let writer = Mutex<Task<Void, Never>?>(nil)

    init(store: FunctionStore, settings: EdgeSettings, host: PluginHostServices) {
        self.store = store
        self.settings = settings
        self.host = host
        let task = Task { [weak self] in
            var lastPurge = Date.distantPast
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard let self else { return }
                await self.flush()
                if Date().timeIntervalSince(lastPurge) > 3600 {
                    lastPurge = Date()
                    await self.purge()
                }
            }
        }
        writer.withLock { $0 = task }
    }

    deinit { writer.withLock { $0?.cancel() } }

    /// Queues one line of `portal`'s function `name` at `version`.
    func append(portal: String, name: FunctionName, version: Int, _ line: EdgeWorkers.FunctionLogLine) {
        let dropped = pending.withLock { pending -> Bool in
            guard pending.count < Self.maxPending else { return true }
            pending.append(
                EdgeCore.FunctionLogLine(
                    portal: portal, name: name, version: version, requestID: line.requestID, level: line.level, message: line.message, at: line.at))
            return false
        }
        if dropped { host.count("edge_log_lines_dropped") }
    }

    /// Writes what is queued.
    func flush() async {
        while true {
            let lines = pending.withLock { pending -> [EdgeCore.FunctionLogLine] in
                // Lines a deploy's trial boot logged before its version existed stay out.
                let taken = Array(pending.prefix(Self.batch)).filter { $0.version > 0 }
                pending.removeFirst(min(Self.batch, pending.count))
                return taken
            }
            guard !lines.isEmpty else {
                if pending.withLock({ $0.isEmpty }) { return }
                continue
            }
            do {
                try await store.appendLogs(lines)
            } catch {
                host.log(.warning, "edge: \(lines.count) function log line(s) could not be stored: \(error)")
                return
            }
        }
    }

    private func purge() async {
        let cutoff = Date().addingTimeInterval(-Double(settings.logRetentionDays) * 86_400)
        do {
            _ = try await store.purgeLogs(olderThan: cutoff, keepPerFunction: settings.logKeepPerFunction)
        } catch {
            host.log(.warning, "edge: purging old function logs failed: \(error)")
        }
    }
}
