import ArgumentParser
import Foundation
import Kernel
import Logging
import VaultCore

/// `meltybase vault rotate-master | rotate-portal-key | bench`: the Vault's operator
/// commands. They use VaultCore on the system database directly and append to the
/// kernel's audit log in the same transaction as the change.
struct VaultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault", abstract: "Rotate the Vault's master key or a portal's data key.",
        discussion: """
            Keys come from the same place the vault plugin reads them: MELTYBASE_MASTER_KEY (or \
            [plugins.vault.config] master_key_file) is the current key, MELTYBASE_MASTER_KEY_PREVIOUS \
            (or previous_master_key_file) the one being retired. Keys are never taken from arguments. \
            See docs/vault.md.
            """,
        subcommands: [RotateMaster.self, RotatePortalKey.self, Bench.self])

    /// The vault settings of `config` and this process's environment.
    static func settings(_ config: KernelConfig) throws -> VaultConfiguration {
        let json = config.plugins.first { $0.name == "vault" }?.configJSON ?? "{}"
        do {
            return try VaultConfiguration(configJSON: json, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw CommandError("\(error)")
        }
    }

    /// Runs `body` on a system database connection with the audit schema in place.
    static func withConnection<T: Sendable>(_ config: KernelConfig, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        var logger = Logger(label: "meltybase")
        logger.logLevel = .warning
        do {
            return try await Kernel(config: config, logger: logger).withSystemDatabase { database in
                try await database.withConnection { connection in
                    try await connection.execute(AuditSchema.sql)
                    return try await body(connection)
                }
            }
        } catch let error as VaultError {
            throw CommandError(error.description)
        } catch let error as PostgresError {
            throw CommandError("cannot use the system database: \(error)")
        } catch let error as PostgresPoolError {
            throw CommandError("cannot use the system database: \(error)")
        }
    }

    /// Appends to the hash-chained audit log inside the rotation's transaction.
    static var audit: VaultRotation.AuditHook { { connection, action, target, details in
        try await AuditChain.append(on: connection, actor: "cli:vault", action: action, target: target, details: details)
    } }

    struct RotateMaster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-master",
            abstract: "Re-wrap every portal data key under the current master key (one transaction).",
            discussion: """
                1. Generate a key: openssl rand -hex 32.
                2. Give kernels MELTYBASE_MASTER_KEY=<new> and MELTYBASE_MASTER_KEY_PREVIOUS=<old> and restart them \
                (they read data keys under either).
                3. Run this command with the same variables. Data keys already under the new key are skipped, so it \
                is safe to run again. Secret ciphertexts are not touched.
                4. Drop MELTYBASE_MASTER_KEY_PREVIOUS; the old key opens nothing any more.
                """)
        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let config = try options.load()
            let keys = try VaultCommand.settings(config).keys
            let result = try await VaultCommand.withConnection(config) { connection in
                try await VaultRotation.rotateMaster(keys: keys, on: connection, audit: VaultCommand.audit)
            }
            print("master key \(result.masterKeyID): re-wrapped \(result.rewrapped) data key(s), \(result.alreadyCurrent) already under it")
        }
    }

    struct RotatePortalKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-portal-key",
            abstract: "Re-encrypt one portal's secrets under a new data key (resumable).",
            discussion: """
                New writes use the new key at once; existing versions are re-encrypted in batches, each its own \
                transaction. After an interruption, run the command again: it resumes with the same new key.
                """)
        @OptionGroup var options: ConfigOptions
        @Option(name: .long, help: "Portal whose data key to replace.") var portal: String
        @Option(name: .long, help: "Secret versions per transaction.") var batchSize: Int = 200

        func validate() throws {
            guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size must be in 1...10000") }
        }

        func run() async throws {
            let (portal, batchSize) = (self.portal, self.batchSize)
            let config = try options.load()
            let keys = try VaultCommand.settings(config).keys
            let result = try await VaultCommand.withConnection(config) { connection in
                try await VaultRotation.rotatePortalKey(portal: portal, keys: keys, on: connection, batchSize: batchSize, audit: VaultCommand.audit)
            }
            print("portal \(portal): \(result.resumed ? "resumed" : "new") data key \(result.dataKeyID), re-encrypted \(result.reencrypted) version(s)\(result.complete ? ", old key removed" : ", not complete: run again")")
        }
    }

    /// Hidden: raw AES-256-GCM throughput of the Vault's envelope (fresh nonce per
    /// record), in the units of `openssl speed` (1000s of bytes per second).
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Measure the Vault's raw seal/open throughput.", shouldDisplay: false)
        @Option(name: .long, parsing: .upToNextOption, help: "Record sizes in bytes.") var sizes: [Int] = [16, 256, 1024, 8192, 16384]
        @Option(name: .long, help: "Seconds per size and direction.") var seconds: Double = 1

        func run() throws {
            let key = SecretBytes.random(count: AESGCM.keyLength)
            let aad = Envelope.secretAAD(portal: "bench", name: "BENCH_SECRET", version: 1)
            for size in sizes {
                let plaintext = [UInt8](repeating: 0x61, count: size)
                var sealed: [UInt8] = []
                let sealRate = try measure { try plaintext.withUnsafeBytes { sealed = try Envelope.seal(key: key, plaintext: $0, aad: aad) } }
                let openRate = try measure { _ = try Envelope.open(key: key, record: sealed, aad: aad) }
                print(String(format: "size %d: seal %.2fk open %.2fk", size, sealRate * Double(size) / 1000, openRate * Double(size) / 1000))
            }
        }

        /// Operations per second of `body` over `seconds`.
        private func measure(_ body: () throws -> Void) throws -> Double {
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
    }
}
