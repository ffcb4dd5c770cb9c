import Foundation

/// LISTEN/NOTIFY on one dedicated connection, reconnecting with a growing backoff (up to
/// two seconds) when Postgres goes away. One per owner; runs until its task is cancelled.
public struct PostgresListener: Sendable {
    /// What the listener reports.
    public enum Event: Sendable {
        /// A notification on one of the channels.
        case notification(channel: String, payload: String)
        /// The connection is (re)established and listening; `afterOutage` is true when it
        /// replaces a lost one (notifications sent meanwhile were missed: reload state).
        case listening(afterOutage: Bool)
        /// The connection was lost; the listener keeps retrying.
        case lost(PostgresError)
    }

    /// The database's conninfo.
    public let conninfo: String
    /// Channel names (quoted as identifiers when sent).
    public let channels: [String]
    private let loop: PostgresEventLoop

    /// A listener on `channels` of the database at `conninfo`.
    public init(conninfo: String, channels: [String], loop: PostgresEventLoop) {
        self.conninfo = conninfo
        self.channels = channels
        self.loop = loop
    }

    /// Listens until the calling task is cancelled, passing every event to `handle` in order.
    public func run(_ handle: @Sendable (Event) async -> Void) async {
        var backoff: Duration = .milliseconds(100)
        var hadConnection = false
        var reportedLoss = false
        while !Task.isCancelled {
            let connection: PostgresConnection
            do {
                connection = try await PostgresConnection.connect(conninfo, on: loop)
                for channel in channels { try await connection.execute("LISTEN " + SQL.ident(channel)) }
            } catch {
                if !reportedLoss { await handle(.lost(error as? PostgresError ?? PostgresError(sqlState: nil, message: "\(error)"))) }
                reportedLoss = true
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(2))
                continue
            }
            backoff = .milliseconds(100)
            await handle(.listening(afterOutage: hadConnection || reportedLoss))
            hadConnection = true
            reportedLoss = false
            do {
                while !Task.isCancelled {
                    let received = try await connection.nextNotifications()
                    for (channel, payload) in received { await handle(.notification(channel: channel, payload: payload)) }
                }
            } catch  where !Task.isCancelled {
                await handle(.lost(error as? PostgresError ?? PostgresError(sqlState: nil, message: "\(error)")))
                reportedLoss = true
            } catch {}
            connection.close()
        }
    }
}
