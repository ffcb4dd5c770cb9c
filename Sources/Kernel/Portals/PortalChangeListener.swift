import Foundation
import Logging
import ServiceLifecycle

/// Reloads the portal registry when the system database announces a change
/// (`NOTIFY meltybase_portals`, sent by triggers), and each time LISTEN takes effect (at
/// start and after reconnecting to a restarted Postgres, when changes may have gone
/// unheard), so every kernel on one database sees the same portals.
///
/// One ``PostgresListener`` on the kernel's event loop: no thread of its own, no polling.
final class PortalChangeListener: Service, Sendable {
    private let listener: PostgresListener
    private let portals: PortalRegistry
    private let logger: Logger
    private let onSystemChange: @Sendable () async -> Void

    init(conninfo: String, loop: PostgresEventLoop, portals: PortalRegistry, logger: Logger, onSystemChange: @escaping @Sendable () async -> Void) {
        listener = PostgresListener(conninfo: conninfo, channels: ["meltybase_portals", "meltybase_system"], loop: loop)
        self.portals = portals
        self.logger = logger
        self.onSystemChange = onSystemChange
    }

    /// Listens until graceful shutdown (or cancellation).
    func run() async throws {
        let (portals, logger, onSystemChange, listener) = (self.portals, self.logger, self.onSystemChange, self.listener)
        await cancelWhenGracefulShutdown {
            await listener.run { event in
                switch event {
                case .notification(let channel, _):
                    if channel == "meltybase_portals" { await Self.reload(portals, logger: logger) }
                    if channel == "meltybase_system" { await onSystemChange() }
                case .listening(let afterOutage):
                    // Changes committed before LISTEN took effect sent notifications nobody
                    // heard: those between the registry's first load and the first LISTEN (a
                    // portal created while this kernel started), or during an outage.
                    if afterOutage { logger.notice("system database is back; reloading portals") }
                    await Self.reload(portals, logger: logger)
                    await onSystemChange()
                case .lost(let error):
                    logger.warning("lost the system database connection; portal changes wait until it is back", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    private static func reload(_ portals: PortalRegistry, logger: Logger) async {
        do { try await portals.reload() } catch { logger.warning("portal reload failed", metadata: ["error": "\(error)"]) }
    }
}
