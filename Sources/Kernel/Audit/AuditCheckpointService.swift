import Logging
import MeltyEd25519
import ServiceLifecycle

/// Signs the audit log's head every `interval` when it has moved since the last
/// checkpoint, and once more at graceful shutdown, so that cutting entries off the end of
/// the log is detected (see ``AuditChain/verify(on:trustedPublicKey:pageSize:)``).
///
/// A failure (Postgres down) is logged and retried at the next tick; it never stops the kernel.
public struct AuditCheckpointService: Service {
    private let database: SystemDatabase
    private let signingKey: Ed25519.KeyPair
    private let interval: Duration
    private let logger: Logger

    /// A service checkpointing `database` with `signingKey` (``AuditSigningKey.loadOrCreate(directory:)``)
    /// every `interval` (default 60 s).
    public init(database: SystemDatabase, signingKey: Ed25519.KeyPair, interval: Duration = .seconds(60), logger: Logger) {
        self.database = database
        self.signingKey = signingKey
        self.interval = interval
        self.logger = logger
    }

    /// Runs until graceful shutdown or cancellation, then writes a last checkpoint.
    public func run() async throws {
        let interval = interval
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: interval)
                await checkpointNow()
            }
        }
        // Its own task: when this one was cancelled (not just shut down gracefully), a
        // query started from it would be cancelled at once.
        let service = self
        await Task { await service.checkpointNow() }.value
    }

    /// Writes a checkpoint if the head moved; returns it (or `nil`: nothing new, or it failed).
    @discardableResult
    public func checkpointNow() async -> AuditCheckpoint? {
        let signingKey = signingKey
        do {
            let checkpoint = try await database.withConnection { connection in
                try await AuditChain.checkpoint(on: connection, signingKey: signingKey)
            }
            if let checkpoint {
                // Logged too, so that a copy of every checkpoint lives outside the database.
                logger.info(
                    "audit checkpoint",
                    metadata: [
                        "audit.seq": "\(checkpoint.seq)", "audit.head_hash": "\(checkpoint.headHash)",
                        "audit.signature": "\(checkpoint.signature)",
                    ])
            }
            return checkpoint
        } catch {
            logger.warning("audit checkpoint not written; retrying at the next interval: \(error)")
            return nil
        }
    }
}
