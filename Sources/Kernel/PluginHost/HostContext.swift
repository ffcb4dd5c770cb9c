import Foundation
import Logging
import MeltyPluginABI
import NIOPosix
import Synchronization

/// One kernel's state behind the C host functions: its pending requests, WebSocket
/// connections, service exports, audit sink, logger and the thread pool for blocking work.
///
/// Host functions reach it through what they receive: a portal or plugin handle holds its
/// kernel's context; `respond` and the WebSocket calls, which get only a token or a
/// connection id, find it by the kernel slot in the id's top 16 bits. Two kernels in one
/// process (tests) share none of it.
final class HostContext: Sendable {
    /// This kernel's slot, the top 16 bits of its request tokens and connection ids.
    let slot: UInt64
    /// Requests handed to plugins and not answered yet.
    let pending: PendingRequests
    /// Open WebSocket connections.
    let webSockets: WebSocketHub
    /// Requests on streaming route prefixes (ABI 1.7): bodies read and answers written in chunks.
    let streams = StreamedExchanges()
    /// Service tables exported by this kernel's plugins.
    let services = ServiceRegistry()
    /// Where plugins' log lines go (tagged per plugin by its handle).
    let logger: Logger
    /// Where `audit` calls without a portal go.
    let audit: any AuditSink
    /// Where blocking work runs: plugin `init`, `instance_create`, `instance_destroy`,
    /// `shutdown`, Argon2 hashing. Bounded, never an event loop or the async executor.
    let blocking: NIOThreadPool
    /// The immortal host table handed to this kernel's plugins.
    let table: SharedPointer<UnsafePointer<mb_host_api>>
    /// `postgres_conninfo`: this kernel's system database (immortal C string, "" without one).
    let conninfo: SharedPointer<UnsafePointer<CChar>>
    /// `redis_url`: this kernel's Redis (immortal C string, "" without one).
    let redisURL: SharedPointer<UnsafePointer<CChar>>
    /// `portal_token_verify`: the gateway's credential resolver (one cache and one set of
    /// checks for requests and plugins), installed once the gateway is built; nil before
    /// and in processes without a gateway (plugin commands).
    var credentials: CredentialResolver? { credentialSlot.withLock { $0 } }
    private let credentialSlot = Mutex<CredentialResolver?>(nil)

    /// Bits of a token or connection id below the kernel slot.
    static let slotShift: UInt64 = 48

    /// A context registered in the directory `respond` and `ws_*` use; `close()` it when
    /// the kernel stops.
    init(logger: Logger, audit: (any AuditSink)? = nil, conninfo: String? = nil, redisURL: String? = nil, blockingThreads: Int = 4) {
        let slot = Self.directory.withLock { directory -> UInt64 in
            directory.next += 1
            return directory.next
        }
        self.slot = slot
        pending = PendingRequests(firstToken: slot << Self.slotShift)
        webSockets = WebSocketHub(firstID: slot << Self.slotShift)
        self.logger = logger
        self.audit = audit ?? LogAuditSink(logger: Logger(label: "meltybase.audit"))
        blocking = NIOThreadPool(numberOfThreads: blockingThreads)
        blocking.start()
        table = SharedPointer(Self.makeTable())
        self.conninfo = SharedPointer(UnsafePointer(strdup(conninfo ?? "")!))
        self.redisURL = SharedPointer(UnsafePointer(strdup(redisURL ?? "")!))
        Self.directory.withLock { $0.live[slot] = WeakContext(context: self) }
    }

    /// Makes `resolver` the one `portal_token_verify` uses: the gateway's, so plugins and
    /// requests share its cache.
    func install(credentials resolver: CredentialResolver) {
        credentialSlot.withLock { $0 = resolver }
    }

    /// Stops the blocking pool (after running what was queued) and the deadline sweeper.
    func close() async {
        Self.directory.withLock { _ = $0.live.removeValue(forKey: slot) }
        pending.stop()
        try? await blocking.shutdownGracefully()
    }

    /// Runs blocking `work` on this kernel's thread pool and returns its result.
    func runBlocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await blocking.runIfActive(work)
    }

    /// The context owning a request token or connection id.
    static func owner(of id: UInt64) -> HostContext? {
        let slot = slot(of: id)
        return directory.withLock { $0.live[slot]?.context }
    }

    /// The kernel slot a request token or connection id carries (its top bits).
    static func slot(of id: UInt64) -> UInt64 { id >> slotShift }

    private struct WeakContext {
        weak var context: HostContext?
    }

    /// Live contexts by slot. Process-wide because `respond(token)` and `ws_send(id)` carry
    /// no handle; it only routes ids to their kernel, whose state stays its own.
    private static let directory = Mutex<(next: UInt64, live: [UInt64: WeakContext])>((0, [:]))

    private static func makeTable() -> UnsafePointer<mb_host_api> {
        let pointer = UnsafeMutablePointer<mb_host_api>.allocate(capacity: 1)
        pointer.initialize(to: hostFunctionTable())
        return UnsafePointer(pointer)
    }
}
