import Foundation
import MeltyJSON
import MeltyPasswords

/// An admin account (`public.secrets`, kind `admin`), without its password hash or TOTP secret.
public struct AdminRecord: Sendable, Equatable, Encodable {
    /// The account's uuid.
    public var id: String
    /// Lowercase email.
    public var email: String
    /// `root` (created by setup) or `admin`.
    public var role: String
    /// Whether TOTP enrolment is confirmed (logins then need a second factor).
    public var totpEnrolled: Bool
    /// When the account was created (RFC 3339, UTC).
    public var createdAt: String

    /// The columns ``init(_:_:)`` reads, from the `public.secrets` row aliased `alias`.
    static func columns(_ alias: String) -> String {
        """
        \(alias).id::text AS admin_id, \(alias).email AS admin_email, \(alias).role AS admin_role,
        \(alias).totp_confirmed_at IS NOT NULL AS admin_totp,
        to_char(\(alias).created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS admin_created_at
        """
    }

    /// Row `index` of a result selected with ``columns(_:)``, or `nil` when there is none.
    init?(_ rows: PostgresRows, _ index: Int) {
        guard let id = rows.value("admin_id", row: index), let email = rows.value("admin_email", row: index) else { return nil }
        self.init(
            id: id, email: email, role: rows.value("admin_role", row: index) ?? "admin",
            totpEnrolled: rows.value("admin_totp", row: index) == "t", createdAt: rows.value("admin_created_at", row: index) ?? "")
    }

    init(id: String, email: String, role: String, totpEnrolled: Bool, createdAt: String) {
        self.id = id
        self.email = email
        self.role = role
        self.totpEnrolled = totpEnrolled
        self.createdAt = createdAt
    }

    /// `{id, email, role, mfa_enabled, created_at}`.
    private enum CodingKeys: String, CodingKey {
        case id, email, role
        case totpEnrolled = "mfa_enabled"
        case createdAt = "created_at"
    }
}

/// The license as setup stored it in `meltybase.system_state`, with the seats in use.
public struct LicenseSummary: Sendable, Encodable {
    /// License id.
    @NullWhenAbsent public var id: String?
    /// `indie` or `commercial`.
    @NullWhenAbsent public var tier: String?
    /// Admin accounts the license allows.
    @NullWhenAbsent public var seats: Int?
    /// Admin accounts that exist.
    public var seatsUsed: Int
    /// The licensee's email.
    @NullWhenAbsent public var owner: String?
    /// Expiry (RFC 3339) or `nil` for a perpetual license.
    @NullWhenAbsent public var expiresAt: String?
    /// When setup completed.
    @NullWhenAbsent public var initializedAt: String?

    /// `{license_id, tier, seats, seats_used, owner, expires_at, initialized_at}` (nulls kept).
    private enum CodingKeys: String, CodingKey {
        case id = "license_id"
        case tier, seats
        case seatsUsed = "seats_used"
        case owner
        case expiresAt = "expires_at"
        case initializedAt = "initialized_at"
    }
}

extension AdminIdentity {
    /// Every admin, oldest first.
    public func listAdmins() async throws -> [AdminRecord] {
        try await database.withConnection { connection in
            let rows = try await connection.query("SELECT \(AdminRecord.columns("a")) FROM public.secrets a WHERE a.kind = 'admin' ORDER BY a.created_at, a.email")
            return rows.rows.indices.compactMap { AdminRecord(rows, $0) }
        }
    }

    /// Creates an admin (role `admin`) on behalf of `principal`, within the license's seats.
    ///
    /// The count and the insert run in one transaction that locks the system-state row, so
    /// concurrent creations cannot overshoot the cap. Refusals: 400 `invalid_field` or
    /// `password_policy`, 403 `seat_limit` naming the cap, 409 `admin_exists`.
    public func createAdmin(by principal: AdminPrincipal, email rawEmail: String, password: String) async throws -> AdminRecord {
        let email = Self.normalize(rawEmail)
        guard SetupService.isPlausibleEmail(email) else {
            throw IdentityError.invalidField("email", "\"\(rawEmail.prefix(254))\" is not an email address")
        }
        let violations = PasswordPolicy().violations(password: password, email: email)
        guard violations.isEmpty else {
            var error = IdentityError(
                status: 400, code: "password_policy", message: violations.map(\.description).joined(separator: "; "),
                hint: "use at least 12 characters that are not the email and not a common password")
            error.extraFields = ["field": "password", "violations": violations.map { ["code": $0.code, "message": $0.description] }]
            throw error
        }
        let hash = try await PasswordHasher().hash(password, on: blocking)
        return try await transaction { connection in
            let seats = try await connection.query("SELECT license_seats FROM meltybase.system_state FOR UPDATE").value("license_seats").flatMap { Int($0) }
            guard let seats else { throw Self.notInitialized }
            let used = Int(try await connection.query("SELECT count(*) AS n FROM public.secrets WHERE kind = 'admin'").value("n") ?? "0") ?? 0
            guard used < seats else {
                throw IdentityError(
                    status: 403, code: "seat_limit",
                    message: "the license allows \(seats) admin account\(seats == 1 ? "" : "s") (seats: \(seats)) and \(used) already exist\(used == 1 ? "s" : "")",
                    hint: "remove an admin account, or install a license with more seats")
            }
            let rows: PostgresRows
            do {
                rows = try await connection.query(
                    "INSERT INTO public.secrets (kind, email, password_hash, role) VALUES ('admin', $1, $2, 'admin') RETURNING \(AdminRecord.columns("secrets"))",
                    [email, hash])
            } catch let error as PostgresError where error.sqlState == "23505" {
                throw IdentityError(status: 409, code: "admin_exists", message: "an admin with the email \(email) already exists")
            }
            guard let created = AdminRecord(rows, 0) else { throw IdentityError.internalFailure("creating an admin returned no row") }
            try await AuditChain.append(
                on: connection, actor: principal.actor, action: "admin.user.create", target: email,
                details: ["admin_id": created.id, "role": created.role, "seats": seats, "seats_used": used + 1])
            return created
        }
    }

    /// The stored license and the number of admin accounts.
    public func licenseSummary() async throws -> LicenseSummary {
        try await database.withConnection { connection in
            let rows = try await connection.query(
                """
                SELECT license_id, license_tier, license_seats, license_owner,
                       to_char(license_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS expires_at,
                       to_char(initialized_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS initialized_at,
                       (SELECT count(*) FROM public.secrets WHERE kind = 'admin') AS seats_used
                FROM meltybase.system_state
                """)
            return LicenseSummary(
                id: rows.value("license_id"), tier: rows.value("license_tier"), seats: rows.value("license_seats").flatMap { Int($0) },
                seatsUsed: Int(rows.value("seats_used") ?? "0") ?? 0, owner: rows.value("license_owner"),
                expiresAt: rows.value("expires_at"), initializedAt: rows.value("initialized_at"))
        }
    }
}
