import Foundation
import MeltyJSON
import MeltyPostgres
import RealtimeCore
import Synchronization

/// Delivers a transaction's row changes to this kernel's `postgres_changes` subscribers:
/// match by schema, table, event and filter; then one visibility check per table and batch
/// for all distinct audiences (role + claims) at once, on the portal's `authenticator`
/// connection; then one frame per (channel, version, ids, audience) handed to all its
/// connections in one host call.
struct ChangeDelivery: Sendable {
    let hub: ChannelHub
    let pool: PostgresPool
    let visibility: VisibilityCheck
    let filters = FilterCache()
    /// Reports a visibility check that failed and is tried again.
    var warn: @Sendable (String) -> Void = { _ in }
    /// Waits between tries of a failed visibility check (the last one repeats).
    static let retryDelays: [Duration] = [.milliseconds(50), .milliseconds(250), .seconds(1), .seconds(5)]

    /// Parsed filters by text: parsed once when a channel joins, then found here per change.
    final class FilterCache: Sendable {
        private let parsed = Mutex<[String: ChangeFilter]>([:])

        /// The filter for `text`, parsed on a miss (throws its parse error).
        func filter(_ text: String) throws -> ChangeFilter {
            if let hit = parsed.withLock({ $0[text] }) { return hit }
            let filter = try ChangeFilter(parsing: text)
            parsed.withLock { cache in
                if cache.count > 10_000 { cache.removeAll() }
                cache[text] = filter
            }
            return filter
        }
    }

    private struct Target: Hashable {
        var topic: String
        var version: ProtocolVersion
        var audience: Audience
    }

    /// Delivers `changes` (one transaction); returns the number of frames queued.
    @discardableResult
    func deliver(_ changes: [RowChange]) async -> Int {
        var bySchema: [String: [ChangeSubscription]] = [:]
        var delivered = 0
        var tables: [String: [Int]] = [:]
        var order: [String] = []
        for (index, change) in changes.enumerated() {
            let key = change.schema + "\u{0}" + change.table
            if tables[key] == nil { order.append(key) }
            tables[key, default: []].append(index)
        }
        for key in order {
            let indices = tables[key] ?? []
            guard let first = indices.first else { continue }
            let schema = changes[first].schema
            if bySchema[schema] == nil { bySchema[schema] = hub.changeSubscriptions(schema: schema) }
            let candidates = (bySchema[schema] ?? []).filter { $0.table == nil || $0.table == changes[first].table }
            if candidates.isEmpty { continue }
            // Which subscriptions each change matches.
            var matches: [[ChangeSubscription]] = []
            var audiences = Set<Audience>()
            // Per audience, the positions in `batch` its subscriptions matched.
            var relevant: [Audience: Set<Int>] = [:]
            for (position, index) in indices.enumerated() {
                let change = changes[index]
                let matched = candidates.filter { subscription in
                    guard subscription.event == "*" || subscription.event == change.type.rawValue else { return false }
                    guard let text = subscription.filter else { return true }
                    return (try? filters.filter(text).matches(change)) ?? false
                }
                matches.append(matched)
                for subscription in matched {
                    let audience = Self.audience(subscription.caller)
                    audiences.insert(audience)
                    relevant[audience, default: []].insert(position)
                }
            }
            if audiences.isEmpty { continue }
            let batch = indices.map { changes[$0] }
            // A failed check (the database unreachable or busy) is tried again, not skipped:
            // the feed acknowledges the batch only after this returns, so giving up would
            // lose committed changes. Per-audience errors never get here (VisibilityCheck
            // judges a broken audience alone). Only cancellation (the kernel stopping) ends it.
            var seen: [Audience: Visibility]?
            var failures = 0
            while seen == nil {
                do {
                    seen = try await pool.run { connection in
                        try await visibility.visibility(of: batch, for: Array(audiences), relevant: relevant, on: connection)
                    }
                } catch {
                    if Task.isCancelled { return delivered }
                    let delay = Self.retryDelays[min(failures, Self.retryDelays.count - 1)]
                    failures += 1
                    warn("realtime: row-level security check of \(batch.count) change(s) failed (try \(failures)), trying again in \(delay): \(error)")
                    try? await Task.sleep(for: delay)
                }
            }
            guard let seen else { continue }
            for (position, change) in batch.enumerated() {
                var groups: [Target: (ids: Set<Int>, connections: [UInt64: [Int]])] = [:]
                for subscription in matches[position] {
                    let audience = Self.audience(subscription.caller)
                    guard let view = seen[audience], view.changes.contains(position) else { continue }
                    let target = Target(topic: subscription.topic, version: subscription.version, audience: audience)
                    groups[target, default: ([], [:])].connections[subscription.connection, default: []].append(subscription.id)
                }
                for (target, group) in groups {
                    guard let view = seen[target.audience] else { continue }
                    let data = view.dataJSON(change)
                    // Connections with the same ids share one frame.
                    var byIDs: [[Int]: [UInt64]] = [:]
                    for (connection, ids) in group.connections { byIDs[ids.sorted(), default: []].append(connection) }
                    for (ids, connections) in byIDs {
                        var payload = Array(#"{"ids":["#.utf8)
                        payload += Array(ids.map(String.init).joined(separator: ",").utf8)
                        payload += Array(#"],"data":"#.utf8)
                        payload += data
                        payload.append(UInt8(ascii: "}"))
                        hub.send(
                            .text(PhoenixFrame.encode(version: target.version, joinRef: nil, ref: nil, topic: target.topic, event: "postgres_changes", payload: payload)),
                            to: connections)
                        delivered += connections.count
                    }
                }
            }
        }
        return delivered
    }

    static func audience(_ caller: Caller) -> Audience {
        Audience(role: caller.role, claims: String(decoding: caller.claimsJSON, as: UTF8.self))
    }
}
