import Foundation
import MeltyEd25519

/// The keys every kernel on one system database must share, checked against the ones the
/// cluster registered before this kernel serves anything.
///
/// A kernel keeps three keys in its key directory (`[kernel] keys_dir`, default the data
/// directory): the sealing key (`mfa-secret.key`: admins' TOTP secrets and portals' JWT
/// secrets), the audit signing key (`audit-signing.key`) and, while no vendor license key
/// is configured, the evaluation license key. The first kernel to start on a system
/// database registers each key's id in `meltybase.cluster_keys`; a later kernel whose key
/// differs refuses to start and says which key and how to fix it, instead of answering
/// every portal request with an error. Ids name keys without revealing them.
public struct ClusterKeySet: Sendable {
    /// One key of the set as this kernel holds it.
    public struct Key: Sendable, Equatable {
        /// Registry name: `sealing`, `audit_signing` or `evaluation_license`.
        public var name: String
        /// What the key is, for messages.
        public var purpose: String
        /// The file holding it.
        public var path: String
        /// The key's id (`nil`: this kernel does not hold the key).
        public var id: String?
    }

    /// This kernel's keys, in registry order.
    public var keys: [Key]

    /// The set from the files this kernel loaded.
    public init(sealing: SecretBox, auditPublicKey: [UInt8], keysDirectory: String, evaluation: EvaluationLicense?, vendorKeyConfigured: Bool) {
        keys = [
            Key(name: "sealing", purpose: "sealing key (TOTP and portal JWT secrets)", path: sealing.path, id: sealing.keyID),
            Key(
                name: "audit_signing", purpose: "audit signing key", path: keysDirectory + "/" + AuditSigningKey.secretKeyFileName,
                id: ByteEncoding.hex(auditPublicKey)),
        ]
        if !vendorKeyConfigured {
            keys.append(
                Key(
                    name: "evaluation_license", purpose: "evaluation license signing key",
                    path: keysDirectory + "/" + EvaluationLicense.secretKeyFileName, id: evaluation?.publicKeyHex))
        }
    }

    /// A key the cluster registered that this kernel holds differently (or not at all).
    public struct Mismatch: Error, CustomStringConvertible, Equatable {
        /// This kernel's key.
        public var key: Key
        /// The id the cluster registered.
        public var clusterID: String
        /// When and by which kernel it was registered.
        public var registered: String

        /// What differs and how to fix it.
        public var description: String {
            let held = key.id.map { "is key \(Self.short($0))" } ?? "is missing"
            return """
                this kernel's \(key.purpose), \(key.path), \(held), but the kernels already sharing this system database use key \
                \(Self.short(clusterID)) (registered \(registered)). Every kernel of a cluster needs the same key set: copy the key \
                files (\(ClusterKeySet.fileNames.joined(separator: ", "))) from a running kernel's key directory to this kernel and \
                point [kernel] keys_dir or MELTYBASE_KEYS_DIR at them (docs/cluster.md, "One key set"). A kernel started with other \
                keys would answer every sealed secret with an error.
                """
        }

        /// The first 16 hex characters: enough to tell keys apart in a message.
        static func short(_ id: String) -> String { String(id.prefix(16)) }
    }

    /// The files of a key set (`meltybase keys init` writes them).
    public static let fileNames = [
        SecretBox.fileName, AuditSigningKey.secretKeyFileName, AuditSigningKey.publicKeyFileName, EvaluationLicense.secretKeyFileName,
        vaultMasterKeyFileName,
    ]

    /// Registers the keys the cluster does not know yet and returns the first mismatch.
    ///
    /// For a cluster registered before this check existed, the sealing key is taken from a
    /// value already sealed in the database (the key that can open it), not from whichever
    /// kernel starts first.
    public func check(on database: SystemDatabase, registeredBy: String) async throws -> Mismatch? {
        try await database.withConnection { connection in
            // One transaction under a lock: two kernels starting at once register one set,
            // not one key each, and the second sees the first's rows.
            try await connection.transaction { connection in
                _ = try await connection.query("SELECT pg_advisory_xact_lock(7426002)")
                return (try await registerAndCompare(on: connection, registeredBy: registeredBy), true)
            }
        }
    }

    private func registerAndCompare(on connection: PostgresConnection, registeredBy: String) async throws -> Mismatch? {
        var firstMismatch: Mismatch?
        for key in keys {
            var candidate = key.id
            if key.name == "sealing" {
                let sealed = try await connection.query(
                    """
                    SELECT split_part(secret_sealed, ':', 2) AS id FROM meltybase.portal_jwt_secrets WHERE secret_sealed LIKE 'xc1:%'
                    UNION ALL SELECT split_part(totp_secret, ':', 2) FROM public.secrets WHERE totp_secret LIKE 'xc1:%'
                    LIMIT 1
                    """)
                if let id = sealed.value("id"), !id.isEmpty { candidate = id }
            }
            let rows = try await connection.query(
                """
                WITH inserted AS (
                    INSERT INTO meltybase.cluster_keys (name, key_id, registered_by) SELECT $1, $2, $3 WHERE $2 <> ''
                    ON CONFLICT (name) DO NOTHING RETURNING key_id, registered_at, registered_by)
                SELECT key_id, to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"') AS at, registered_by FROM inserted
                UNION ALL
                SELECT key_id, to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), registered_by
                    FROM meltybase.cluster_keys WHERE name = $1
                LIMIT 1
                """, [key.name, candidate ?? "", registeredBy])
            // Nothing registered and nothing to register: a key this kernel and the cluster both lack.
            guard let clusterID = rows.value("key_id") else { continue }
            if clusterID != key.id, firstMismatch == nil {
                let registered = "\(rows.value("at") ?? "earlier") by \(rows.value("registered_by") ?? "another kernel")"
                firstMismatch = Mismatch(key: key, clusterID: clusterID, registered: registered)
            }
        }
        return firstMismatch
    }

    /// The sealing key for a command-line tool that seals on the cluster's database (`meltybase
    /// portal create`): once the cluster registered one, this machine's must be that key (a
    /// missing file is not created, another key is refused with the fix); before that, the
    /// key in `keysDirectory`, created if missing (the kernel registers it when it starts).
    public static func sealingKey(keysDirectory: String, database: SystemDatabase) async throws -> SecretBox {
        let registered = try await database.withConnection { connection in
            try await connection.query("SELECT key_id FROM meltybase.cluster_keys WHERE name = 'sealing'").scalar
        }
        let path = keysDirectory + "/" + SecretBox.fileName
        if let registered, !FileManager.default.fileExists(atPath: path) {
            throw IdentityError.internalFailure(
                "\(path) does not exist, and the kernels sharing this database seal with key \(Mismatch.short(registered)): run this with the "
                    + "cluster's key set ([kernel] keys_dir or MELTYBASE_KEYS_DIR, or --data-dir of a kernel's data directory; docs/cluster.md)")
        }
        let box = try SecretBox.loadOrCreate(directory: keysDirectory)
        if let registered, registered != box.keyID {
            let key = Key(name: "sealing", purpose: "sealing key (TOTP and portal JWT secrets)", path: box.path, id: box.keyID)
            throw Mismatch(key: key, clusterID: registered, registered: "by a kernel")
        }
        return box
    }

    /// Who registers: this host and key directory, for the message another kernel prints.
    public static func registrant(keysDirectory: String) -> String {
        "the kernel on \(ProcessInfo.processInfo.hostName) with keys in \(keysDirectory)"
    }
}

extension ClusterKeySet {
    /// One file of a key set on disk, as `meltybase keys` reports it.
    public struct FileReport: Sendable {
        /// The file.
        public var path: String
        /// What it holds.
        public var purpose: String
        /// The key's id (public keys in full), `nil` when the file is missing.
        public var id: String?
        /// Whether this call created it.
        public var created: Bool
    }

    /// File name of the vault's master key in a key set made by ``create(directory:)``
    /// (the vault reads it through `[plugins.vault.config] master_key_file`).
    public static let vaultMasterKeyFileName = "vault-master.key"

    /// Creates `<directory>/vault-master.key` (32 random bytes as hex, mode 0600) when it is
    /// missing, so that a first start has a vault key on this machine (the kernel calls it
    /// before loading plugins); an existing file is checked, never replaced.
    public static func createVaultMasterKeyIfMissing(directory: String) throws {
        do {
            var key = try SecretKeyFile.loadOrCreate(path: directory + "/" + vaultMasterKeyFileName, length: 32, purpose: "the vault master key")
            Ed25519.wipe(&key)
        } catch {
            throw IdentityError.internalFailure(error.description)
        }
    }

    /// Creates the missing files of a key set in `directory` (mode 0700, files 0600) and
    /// reports every file; existing files are kept (and checked).
    public static func create(directory: String) throws -> [FileReport] {
        try report(directory: directory, create: true)
    }

    /// Reports the key set in `directory` without creating anything.
    public static func inspect(directory: String) throws -> [FileReport] {
        try report(directory: directory, create: false)
    }

    private static func report(directory: String, create: Bool) throws -> [FileReport] {
        if create {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: directory + "/" + name) }
        var reports: [FileReport] = []

        let sealingExisted = exists(SecretBox.fileName)
        let sealing = sealingExisted || create ? try SecretBox.loadOrCreate(directory: directory) : nil
        reports.append(
            FileReport(path: directory + "/" + SecretBox.fileName, purpose: "sealing key (TOTP and portal JWT secrets)", id: sealing?.keyID, created: !sealingExisted && create))

        let auditExisted = exists(AuditSigningKey.secretKeyFileName)
        var auditID: String?
        if auditExisted || create {
            var pair = try AuditSigningKey.loadOrCreate(directory: directory)
            auditID = ByteEncoding.hex(pair.publicKey)
            Ed25519.wipe(&pair.secretKey)
        }
        reports.append(
            FileReport(
                path: directory + "/" + AuditSigningKey.secretKeyFileName, purpose: "audit signing key (public key shown)", id: auditID,
                created: !auditExisted && create))

        let evaluationPath = directory + "/" + EvaluationLicense.secretKeyFileName
        let evaluationExisted = exists(EvaluationLicense.secretKeyFileName)
        var evaluationID: String?
        if evaluationExisted || create {
            do {
                var secret = try SecretKeyFile.loadOrCreate(
                    path: evaluationPath, length: 64, purpose: "the evaluation license signing key", generate: { Ed25519.generate().secretKey })
                evaluationID = ByteEncoding.hex(Array(secret[32..<64]))
                Ed25519.wipe(&secret)
            } catch {
                throw IdentityError.internalFailure(error.description)
            }
        }
        reports.append(
            FileReport(
                path: evaluationPath, purpose: "evaluation license signing key (public key shown; unused with a vendor key)", id: evaluationID,
                created: !evaluationExisted && create))

        let vaultPath = directory + "/" + vaultMasterKeyFileName
        let vaultExisted = exists(vaultMasterKeyFileName)
        var vaultID: String?
        if vaultExisted || create {
            try createVaultMasterKeyIfMissing(directory: directory)
            vaultID = "present"
        }
        reports.append(
            FileReport(
                path: vaultPath, purpose: "vault master key (the vault logs its id at start)", id: vaultID, created: !vaultExisted && create))
        return reports
    }
}
