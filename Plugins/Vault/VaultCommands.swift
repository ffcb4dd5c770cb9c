import Dispatch
import Foundation
import MeltyPluginSDK
import MeltyPostgres
import VaultCore

/// `meltybase vault rotate-master | rotate-portal-key | bench`: the Vault's operator
/// commands (ABI 1.5 plugin commands, formerly built into the CLI). Keys come from the same
/// place the plugin reads them: MELTYBASE_MASTER_KEY (or `master_key_file`) is the current
/// key, MELTYBASE_MASTER_KEY_PREVIOUS (or `previous_master_key_file`) the one being retired;
/// never from arguments. Each rotation step is audited through the host (`host->audit`):
/// the entry is committed by the host when the step records it, on the host's own
/// connection, no longer inside the step's transaction (see docs/vault.md).
enum VaultCommands {
    static var all: [PluginCommandDefinition] { [rotateMaster, rotatePortalKey, bench] }

    static let rotateMaster = PluginCommandDefinition(
        name: "rotate-master",
        summary: "Re-wrap every portal data key under the current master key (one transaction).",
        help: """
            USAGE: meltybase vault rotate-master [--config <path>]

            Re-wrap every portal data key under the current master key (one transaction).

            1. Generate a key: openssl rand -hex 32.
            2. Give kernels MELTYBASE_MASTER_KEY=<new> and MELTYBASE_MASTER_KEY_PREVIOUS=<old> and restart them \
            (they read data keys under either).
            3. Run this command with the same variables. Data keys already under the new key are skipped, so it \
            is safe to run again. Secret ciphertexts are not touched.
            4. Drop MELTYBASE_MASTER_KEY_PREVIOUS; the old key opens nothing any more.
            """
    ) { _, context in
        let keys = try settings(context).keys
        let result = try await withConnection(context) { connection in
            try await VaultRotation.rotateMaster(keys: keys, on: connection, audit: audit(context))
        }
        context.output.print("master key \(result.masterKeyID): re-wrapped \(result.rewrapped) data key(s), \(result.alreadyCurrent) already under it")
        return 0
    }

    static let rotatePortalKey = PluginCommandDefinition(
        name: "rotate-portal-key",
        summary: "Re-encrypt one portal's secrets under a new data key (resumable).",
        help: """
            USAGE: meltybase vault rotate-portal-key --portal <portal> [--batch-size <n>] [--config <path>]

            Re-encrypt one portal's secrets under a new data key (resumable).

            New writes use the new key at once; existing versions are re-encrypted in batches, each its own \
            transaction. After an interruption, run the command again: it resumes with the same new key.

            OPTIONS:
              --portal <portal>       Portal whose data key to replace.
              --batch-size <n>        Secret versions per transaction, 1...10000 (default: 200).
            """,
        options: [.value("portal"), .value("batch-size")]
    ) { arguments, context in
        let portal = try arguments.required("portal")
        let batchSize = try arguments.integer("batch-size", default: 200, in: 1...10_000)
        let keys = try settings(context).keys
        let result = try await withConnection(context) { connection in
            try await VaultRotation.rotatePortalKey(portal: portal, keys: keys, on: connection, batchSize: batchSize, audit: audit(context))
        }
        context.output.print(
            "portal \(portal): \(result.resumed ? "resumed" : "new") data key \(result.dataKeyID), re-encrypted \(result.reencrypted) version(s)\(result.complete ? ", old key removed" : ", not complete: run again")"
        )
        return 0
    }

    /// Raw AES-256-GCM throughput of the Vault's envelope (fresh nonce per record), in the
    /// units of `openssl speed` (1000s of bytes per second).
    static let bench = PluginCommandDefinition(
        name: "bench",
        summary: "Measure the Vault's raw seal/open throughput (Benchmarks/vault.sh).",
        help: """
            USAGE: meltybase vault bench [--sizes <n> ...] [--seconds <s>]

            OPTIONS:
              --sizes <n> ...         Record sizes in bytes (default: 16 256 1024 8192 16384).
              --seconds <s>           Seconds per size and direction (default: 1).
            """,
        options: [.list("sizes"), .value("seconds")]
    ) { arguments, context in
        let sizes = try (arguments.list("sizes") ?? ["16", "256", "1024", "8192", "16384"]).map { text -> Int in
            guard let size = Int(text), (1...(64 * 1024 * 1024)).contains(size) else { throw CommandUsageError("--sizes takes byte counts, found \"\(text)\"") }
            return size
        }
        let seconds = try arguments.number("seconds", default: 1)
        guard seconds > 0 && seconds <= 600 else { throw CommandUsageError("--seconds must be in (0, 600]") }
        let key = SecretBytes.random(count: AESGCM.keyLength)
        let aad = Envelope.secretAAD(portal: "bench", name: "BENCH_SECRET", version: 1)
        for size in sizes {
            let plaintext = [UInt8](repeating: 0x61, count: size)
            var sealed: [UInt8] = []
            let sealRate = try measure(seconds) { try plaintext.withUnsafeBytes { sealed = try Envelope.seal(key: key, plaintext: $0, aad: aad) } }
            let openRate = try measure(seconds) { _ = try Envelope.open(key: key, record: sealed, aad: aad) }
            context.output.print(String(format: "size %d: seal %.2fk open %.2fk", size, sealRate * Double(size) / 1000, openRate * Double(size) / 1000))
        }
        return 0
    }

    /// Operations per second of `body` over `seconds`.
    private static func measure(_ seconds: Double, _ body: () throws -> Void) throws -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        var count = 0
        var elapsed: UInt64 = 0
        repeat {
            for _ in 0..<64 { try body() }
            count += 64
            elapsed = DispatchTime.now().uptimeNanoseconds - start
        } while Double(elapsed) < seconds * 1e9
        return Double(count) / (Double(elapsed) / 1e9)
    }

    /// The vault settings of the plugin's config table and this process's environment.
    static func settings(_ context: CommandContext) throws -> VaultConfiguration {
        do {
            return try VaultConfiguration(config: context.config.values, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw PluginError.invalid("\(error)")
        }
    }

    /// Runs `body` on one connection to the system database (the host's `postgres_conninfo`).
    static func withConnection<T: Sendable>(_ context: CommandContext, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let loop = PostgresEventLoop(name: "meltybase-vault-cli")
        defer { loop.shutdown() }
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(context.host.postgresConninfo(), on: loop)
        } catch let error as PostgresError {
            throw PluginError.unavailable("cannot use the system database: \(error)")
        }
        defer { connection.close() }
        do {
            return try await body(connection)
        } catch let error as VaultError {
            throw PluginError.invalid(error.description)
        } catch let error as PostgresError {
            throw PluginError.unavailable("cannot use the system database: \(error)")
        }
    }

    /// Audits each rotation step through the host; a refusal fails the command.
    static func audit(_ context: CommandContext) -> VaultRotation.AuditHook {
        { _, action, target, details in
            try await context.host.audit(action: action, target: target, details: details)
        }
    }
}
