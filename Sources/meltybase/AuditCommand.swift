import ArgumentParser
import Foundation
import Kernel
import Logging
import MeltyEd25519

/// `meltybase audit verify`.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Check the hash-chained audit log.",
        subcommands: [Verify.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every audit entry and checkpoint; name the first bad entry.",
            discussion: """
                Recomputes each entry's hash, follows the chain from entry #1, and checks every signed \
                checkpoint against the instance's audit key (<data dir>/audit-signing.pub), so that \
                modified, deleted, inserted or reordered entries and a cut-off tail are found.

                Exits 0 when the log is intact, 1 when it is not. See docs/audit-log.md.
                """)

        @OptionGroup var options: ConfigOptions

        @Option(name: .long, help: "Trust this Ed25519 public key (hex) for checkpoints instead of the one in the data directory, e.g. a copy kept off this machine.")
        var publicKey: String?

        func run() async throws {
            let config = try options.load()
            let trustedKey = try trustedPublicKey(keysDirectory: config.keysDirectory)
            var logger = Logger(label: "meltybase")
            logger.logLevel = .warning
            let result: AuditVerification
            do {
                result = try await Kernel(config: config, logger: logger).withSystemDatabase { database in
                    try await database.withConnection { connection in
                        try await connection.execute(AuditSchema.sql)
                        return try await AuditChain.verify(on: connection, trustedPublicKey: trustedKey)
                    }
                }
            } catch let error as AuditError {
                throw CommandError(error.description)
            } catch let error as PostgresError {
                throw CommandError("cannot read the audit log from the system database: \(error)")
            } catch let error as PostgresPoolError {
                throw CommandError("cannot read the audit log from the system database: \(error)")
            }
            if let problem = result.problem {
                print("audit log BROKEN at entry #\(problem.seq): \(problem.description)")
                throw ExitCode(1)
            }
            print("audit log OK: \(result.entries) entries, \(result.checkpointsChecked) checkpoints verified")
        }

        /// `--public-key`, else the key set's audit key, else `nil` (with a note on stderr).
        private func trustedPublicKey(keysDirectory: String) throws -> [UInt8]? {
            if let publicKey {
                guard let key = ByteEncoding.fromHex(publicKey.trimmingCharacters(in: .whitespaces)), key.count == 32 else {
                    throw CommandError("--public-key must be a 32-byte Ed25519 public key in hex (64 characters)")
                }
                return key
            }
            do {
                if let key = try AuditSigningKey.loadPublicKey(directory: keysDirectory) { return key }
            } catch let error as AuditError {
                throw CommandError(error.description)
            }
            FileHandle.standardError.write(
                Data(
                    """
                    note: no audit key in \(keysDirectory) (\(AuditSigningKey.publicKeyFileName)); checkpoint signatures are \
                    checked only against the keys stored with them. Pass --data-dir, set [kernel] keys_dir, or pass --public-key.\n
                    """.utf8))
            return nil
        }
    }
}
