import Foundation
import Logging
import Synchronization

/// Scheduled base backups of the embedded cluster, run by the process that owns it.
///
/// The first backup is taken shortly after start when there is none yet (a fresh install
/// has one within a minute) or when the newest is older than the interval; after that one
/// every `base_backup_interval_hours`. Each backup is followed by retention. Waiting audit
/// entries (``PendingAudit``) are written first and after every backup. The work runs in
/// one task; the tools run on threads of their own (``ToolRunner``).
public final class BackupScheduler: Sendable {
    private let maker: BaseBackupMaker
    private let intervalHours: Int
    private let firstDelaySeconds: Double
    private let logger: Logger
    private let audit: @Sendable (PendingAudit.Entry) async throws -> Void
    private let task = Mutex<Task<Void, Never>?>(nil)

    /// A scheduler taking backups with `maker` every `intervalHours` (0: none, only pending
    /// audit entries are written), the first one `firstDelaySeconds` after ``start()``;
    /// `audit` writes one entry into the audit chain.
    public init(
        maker: BaseBackupMaker, intervalHours: Int, firstDelaySeconds: Double = 20, logger: Logger,
        audit: @escaping @Sendable (PendingAudit.Entry) async throws -> Void
    ) {
        self.maker = maker
        self.intervalHours = intervalHours
        self.firstDelaySeconds = firstDelaySeconds
        self.logger = logger
        self.audit = audit
    }

    /// Starts the schedule.
    public func start() {
        let started = Task { [self] in await self.loop() }
        task.withLock { $0 = started }
    }

    /// Stops the schedule (a backup in progress ends when Postgres stops).
    public func stop() {
        task.withLock { $0?.cancel() }
    }

    private func loop() async {
        try? await Task.sleep(for: .seconds(firstDelaySeconds))
        let pending = PendingAudit(root: maker.store.root)
        while !Task.isCancelled {
            await flush(pending)
            guard intervalHours > 0 else { return }
            let interval = Double(intervalHours) * 3600
            let store = maker.store
            let newest = (try? await ToolRunner.onOwnThread { try store.list() })?.first
            let due = newest.map { $0.startTime.addingTimeInterval(interval) } ?? Date()
            let wait = due.timeIntervalSinceNow
            if wait > 0 {
                try? await Task.sleep(for: .seconds(min(wait, 3600)))
                continue
            }
            do {
                let (backup, removed) = try await maker.create(trigger: "scheduled")
                logger.notice(
                    "scheduled base backup taken",
                    metadata: ["backup": "\(backup.name)", "bytes": "\(backup.sizeBytes)", "removed": "\(removed.map(\.name).joined(separator: ","))"])
                try? pending.add(BackupAuditEntries.created(backup, removed: removed, actor: "kernel"))
            } catch {
                logger.error("scheduled base backup failed; retrying in 10 minutes", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(600))
            }
        }
    }

    private func flush(_ pending: PendingAudit) async {
        do {
            try await pending.flush(audit)
        } catch {
            logger.warning("backup audit entries could not be written yet; they stay in \(pending.path)", metadata: ["error": "\(error)"])
        }
    }
}

/// The audit entries of backup actions.
public enum BackupAuditEntries {
    /// `backup.created` for `backup` (and the backups retention removed).
    public static func created(_ backup: BaseBackup, removed: [BaseBackup], actor: String) -> PendingAudit.Entry {
        PendingAudit.Entry(
            actor: actor, action: "backup.created", target: backup.name,
            details: [
                "trigger": backup.trigger, "start_lsn": backup.startLSN, "end_lsn": backup.endLSN, "size_bytes": "\(backup.sizeBytes)",
                "removed": removed.map(\.name).joined(separator: ","),
            ])
    }

    /// `backup.restored` (or `backup.replaced` when the kernel's cluster was swapped).
    public static func restored(_ result: PointInTimeRestore.Result, target: Date, replacedAside: String?, actor: String) -> PendingAudit.Entry {
        var details = [
            "target_time": RecoveryTarget.iso8601(target), "base_backup": result.backup.name, "directory": result.directory, "timeline": result.timeline,
        ]
        if let replacedAside { details["previous_cluster"] = replacedAside }
        return PendingAudit.Entry(actor: actor, action: replacedAside == nil ? "backup.restored" : "backup.replaced", target: result.directory, details: details)
    }
}
