import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Reloads the portal registry when the system database announces a change
/// (`NOTIFY meltybase_portals`, sent by triggers), and after reconnecting to a
/// restarted Postgres, so every kernel on one database sees the same portals.
final class PortalChangeListener: Service, Sendable {
    private let conninfo: String
    private let portals: PortalRegistry
    private let logger: Logger
    private let stopping = NIOLockedValueBox(false)

    private let onSystemChange: @Sendable () async -> Void

    init(conninfo: String, portals: PortalRegistry, logger: Logger, onSystemChange: @escaping @Sendable () async -> Void) {
        self.conninfo = conninfo
        self.portals = portals
        self.logger = logger
        self.onSystemChange = onSystemChange
    }

    func run() async throws {
        let thread = Thread { [self] in listen() }
        thread.name = "meltybase-portal-listener"
        thread.start()
        try? await gracefulShutdown()
        stopping.withLockedValue { $0 = true }
    }

    private func listen() {
        var connection: PostgresConnection?
        var wasDown = false
        while !stopping.withLockedValue({ $0 }) {
            do {
                if connection?.isHealthy != true {
                    let fresh = try PostgresConnection(conninfo: conninfo)
                    try fresh.query("LISTEN meltybase_portals")
                    try fresh.query("LISTEN meltybase_system")
                    connection = fresh
                    if wasDown {
                        logger.notice("system database is back; reloading portals")
                        triggerReload()
                        let callback = onSystemChange
                        Task { await callback() }
                        wasDown = false
                    }
                }
                let channels = Set(try connection!.notifications(timeout: 0.5).map(\.channel))
                if channels.contains("meltybase_portals") { triggerReload() }
                if channels.contains("meltybase_system") {
                    let callback = onSystemChange
                    Task { await callback() }
                }
            } catch {
                if !wasDown { logger.warning("lost the system database connection; portal changes wait until it is back", metadata: ["error": "\(error)"]) }
                wasDown = true
                connection = nil
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
    }

    private func triggerReload() {
        let portals = self.portals
        let logger = self.logger
        Task {
            do { try await portals.reload() } catch { logger.warning("portal reload failed", metadata: ["error": "\(error)"]) }
        }
    }
}
