import Foundation
import Logging
import MeltyLicense
import MeltyPasswords
import NIOPosix

/// The one-time setup handshake of the seed's phases 3 to 5: verify the license, create
/// the root admin with an Argon2id hash, flip `is_initialized`, and open the audit chain,
/// all in one Postgres transaction. Afterwards setup is closed for good: the flag lives
/// in the system database (also across restarts), and the transaction locks the state
/// row, so of many concurrent calls exactly one succeeds.
public struct SetupService: Sendable {
    let database: SystemDatabase
    let state: SystemState
    let config: KernelConfig
    let logger: Logger
    /// Where the admin's Argon2id hash is computed.
    let blocking: NIOThreadPool

    /// A service over `database` that updates the cached `state` and logs to `logger`;
    /// Argon2id runs on `blocking` (the kernel's pool; NIO's shared one for tools).
    public init(database: SystemDatabase, state: SystemState, config: KernelConfig, logger: Logger, blocking: NIOThreadPool = .singleton) {
        self.blocking = blocking
        self.database = database
        self.state = state
        self.config = config
        self.logger = logger
    }

    /// What a successful setup established.
    public struct Outcome: Sendable {
        /// The verified license.
        public var license: License
        /// The admin's email.
        public var adminEmail: String
        /// Where the Studio lives.
        public var entryPoint: String
    }

    /// Why setup was refused; each maps to a 4xx answer.
    public enum Refusal: Error, CustomStringConvertible {
        /// Already initialised: setup is permanently disabled.
        case closed
        /// A field is missing or malformed.
        case invalidField(field: String, message: String)
        /// The license did not verify.
        case license(LicenseError)
        /// The password broke the policy.
        case weakPassword([PasswordPolicy.Violation])

        /// A sentence for the log or the terminal.
        public var description: String {
            switch self {
            case .closed: "this instance is already initialized; setup is permanently disabled"
            case .invalidField(let field, let message): "\(field): \(message)"
            case .license(let error): "license refused: \(error)"
            case .weakPassword(let violations): "password refused: " + violations.map(\.description).joined(separator: "; ")
            }
        }
    }

    /// Runs the handshake. The password is hashed off the event loop and never logged.
    public func perform(licenseKey: String, email rawEmail: String, password: String) async throws -> Outcome {
        if state.isInitialized { throw Refusal.closed }
        let email = rawEmail.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard Self.isPlausibleEmail(email) else {
            throw Refusal.invalidField(field: "admin.email", message: "\"\(rawEmail.prefix(254))\" is not an email address")
        }
        let license: License
        do {
            license = try LicenseVerifier(publicKeyHex: config.licensePublicKey).verify(licenseKey)
        } catch {
            throw Refusal.license(error)
        }
        let violations = PasswordPolicy().violations(password: password, email: email)
        guard violations.isEmpty else { throw Refusal.weakPassword(violations) }
        let hash = try await PasswordHasher().hash(password, on: blocking)

        let committed = try await database.withConnection { connection -> Bool in
            try await connection.query("BEGIN")
            do {
                let initialized = try await connection.query("SELECT is_initialized FROM meltybase.system_state FOR UPDATE").value("is_initialized")
                guard initialized == "f" else {
                    try await connection.query("ROLLBACK")
                    return false
                }
                try await connection.query(
                    "INSERT INTO public.secrets (kind, email, password_hash, role) VALUES ('admin', $1, $2, 'root')",
                    [email, hash])
                try await connection.query(
                    """
                    UPDATE meltybase.system_state SET is_initialized = true, initialized_at = now(), license_key = $1,
                        license_id = $2, license_tier = $3, license_seats = $4, license_owner = $5, license_expires_at = $6::timestamptz
                    """,
                    [
                        licenseKey, license.id, license.tier.rawValue, String(license.seats), license.ownerEmail,
                        license.expiresAt.map { ISO8601DateFormatter().string(from: $0) },
                    ])
                try await AuditChain.append(
                    on: connection, actor: "admin:\(email)", action: "system.setup", target: "instance", portal: nil,
                    details: ["license_id": license.id, "tier": license.tier.rawValue, "seats": license.seats, "owner": license.ownerEmail])
                try await connection.query("NOTIFY meltybase_system")
                try await connection.query("COMMIT")
                return true
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        }
        guard committed else {
            state.isInitialized = true
            throw Refusal.closed
        }
        state.isInitialized = true
        let outcome = Outcome(license: license, adminEmail: email, entryPoint: Self.entryPoint(config))
        logger.notice("MeltyBase Initialized Successfully.")
        logger.notice("Tier: \(license.tier.rawValue.uppercased()) | Seats: \(license.seats) | Owner: \(license.ownerEmail)")
        logger.notice("Access granted. Entry point: \(outcome.entryPoint)")
        return outcome
    }

    /// `http://localhost:3000/dashboard` for the first listener.
    static func entryPoint(_ config: KernelConfig) -> String {
        studioURL(config.listeners[0], port: config.listeners[0].port)
    }

    /// `http://localhost:<port>/dashboard` for a listener (loopback and wildcard hosts as `localhost`).
    static func studioURL(_ listener: ListenerConfig, port: Int) -> String {
        let host = ["127.0.0.1", "0.0.0.0", "::1", "::"].contains(listener.host) ? "localhost" : listener.host
        return "\(listener.scheme)://\(host):\(port)/dashboard"
    }

    /// One `@`, a non-empty local part, a dotted domain, no spaces, at most 254 bytes.
    static func isPlausibleEmail(_ email: String) -> Bool {
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard email.utf8.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
            !parts[1].hasPrefix("."), !parts[1].hasSuffix(".")
        else { return false }
        return !email.contains(where: { $0.isWhitespace || $0.isNewline || $0 == "\"" || $0 == "<" || $0 == ">" })
    }
}
