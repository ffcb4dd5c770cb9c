import Crypto
import Foundation
import MeltyEd25519
import MeltyQR
import MeltyTOTP

/// What TOTP enrolment hands the admin, once.
public struct TOTPEnrolment: Sendable, Encodable {
    /// The secret in base32, for typing into an app.
    public var secret: String
    /// `otpauth://totp/MeltyBase:<email>?secret=...&issuer=MeltyBase`, for a QR code.
    public var otpauthURI: String
    /// Ten single-use recovery codes (`xxxx-xxxx-xxxx-xxxx`).
    public var recoveryCodes: [String]

    /// ``otpauthURI`` as a QR code, an SVG document drawn here (the Studio inserts it as is),
    /// or nil when the URI is longer than a version 10 symbol holds (an email of more than
    /// about 130 bytes): then the secret is typed in.
    public var qrSVG: String? {
        try? QRCode(text: otpauthURI).svg(label: "QR code of the TOTP secret", className: "qr")
    }

    private enum CodingKeys: String, CodingKey {
        case secret
        case otpauthURI = "otpauth_uri"
        case qrSVG = "qr_svg"
        case recoveryCodes = "recovery_codes"
    }

    /// `{secret, otpauth_uri, qr_svg, recovery_codes}` (`qr_svg` absent when there is no QR code).
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(secret, forKey: .secret)
        try container.encode(otpauthURI, forKey: .otpauthURI)
        try container.encodeIfPresent(qrSVG, forKey: .qrSVG)
        try container.encode(recoveryCodes, forKey: .recoveryCodes)
    }
}

/// TOTP enrolment and the second-factor challenge.
///
/// Storage (`public.secrets`): the confirmed secret in `totp_secret`, a pending one in
/// `totp_pending_secret`, both sealed by ``SecretBox``; `totp_confirmed_at`; and
/// `totp_last_step`, the time step of the last accepted code. A code is accepted only for a
/// step later than that one, so a code (or an earlier one) cannot be replayed, by anyone,
/// on any kernel. Recovery codes (`meltybase.admin_recovery_codes`) are stored as SHA-256
/// hashes (each carries 80 random bits, beyond offline guessing) and work once.
extension AdminIdentity {
    /// Recovery codes per enrolment.
    static let recoveryCodeCount = 10

    /// Starts (or restarts) TOTP enrolment: a new secret and recovery codes, pending until
    /// ``verifyTOTPEnrolment(_:code:address:)``. An admin who already has TOTP must be at
    /// `aal2` to replace it.
    public func enrollTOTP(_ principal: AdminPrincipal) async throws -> TOTPEnrolment {
        if principal.admin.totpEnrolled, principal.aal < .aal2 { throw Self.aal2Required(principal) }
        let box = try mfaSecretBox()
        var secret = TOTP.generateSecret()
        defer { Ed25519.wipe(&secret) }
        let sealed = box.seal(secret, context: principal.adminID)
        let codes = (0..<Self.recoveryCodeCount).map { _ in Self.newRecoveryCode() }
        let hashes = codes.map(Self.recoveryCodeHash)
        try await transaction { connection in
            try await connection.query("UPDATE public.secrets SET totp_pending_secret = $2 WHERE id = $1::uuid", [principal.adminID, sealed])
            try await connection.query("DELETE FROM meltybase.admin_recovery_codes WHERE admin_id = $1::uuid AND NOT active", [principal.adminID])
            for hash in hashes {
                try await connection.query(
                    "INSERT INTO meltybase.admin_recovery_codes (admin_id, code_hash, active) VALUES ($1::uuid, $2, false)",
                    [principal.adminID, hash])
            }
            try await AuditChain.append(
                on: connection, actor: principal.actor, action: "admin.mfa.enroll", target: principal.email,
                details: ["method": "totp", "session_id": principal.sessionID, "replacing": principal.admin.totpEnrolled])
        }
        return TOTPEnrolment(
            secret: Base32.encode(secret), otpauthURI: TOTP.provisioningURI(secret: secret, account: principal.email),
            recoveryCodes: codes)
    }

    /// Confirms the pending enrolment with a current `code`: the secret becomes the
    /// admin's, its recovery codes replace any earlier ones, and a new `aal2` session
    /// replaces the caller's.
    public func verifyTOTPEnrolment(_ principal: AdminPrincipal, code: String, address: String) async throws -> AdminTokenPair {
        let code = Self.trimmedCode(code)
        guard !code.isEmpty else { throw IdentityError.invalidField("code", "code is required (the 6 digits your app shows)") }
        try await beginMFAAttempt(principal, address: address)
        let box = try mfaSecretBox()
        let now = Date()
        let outcome = try await transaction { connection -> MFAOutcome in
            let rows = try await connection.query(
                "SELECT totp_pending_secret, totp_last_step FROM public.secrets WHERE id = $1::uuid FOR UPDATE", [principal.adminID])
            guard let sealed = rows.value("totp_pending_secret") else {
                throw IdentityError(
                    status: 409, code: "no_pending_enrolment", message: "there is no TOTP enrolment to confirm",
                    hint: "start one at POST /v1/admin/mfa/totp/enroll")
            }
            var secret = try box.open(sealed, context: principal.adminID)
            defer { Ed25519.wipe(&secret) }
            guard let step = TOTP(secret: secret).matchingStep(code, at: now) else { return .wrongCode }
            if let last = rows.value("totp_last_step").flatMap({ Int64($0) }), step <= last { return .replayed }
            try await connection.query(
                """
                UPDATE public.secrets SET totp_secret = totp_pending_secret, totp_pending_secret = NULL,
                    totp_confirmed_at = now(), totp_last_step = $2 WHERE id = $1::uuid
                """, [principal.adminID, String(step)])
            try await connection.query("DELETE FROM meltybase.admin_recovery_codes WHERE admin_id = $1::uuid AND active", [principal.adminID])
            try await connection.query("UPDATE meltybase.admin_recovery_codes SET active = true WHERE admin_id = $1::uuid", [principal.adminID])
            var admin = principal.admin
            admin.totpEnrolled = true
            let session = try await Self.elevate(
                on: connection, principal, admin: admin, amr: ["pwd", "otp"], action: "admin.mfa.enrolled",
                details: ["method": "totp", "address": address])
            return .elevated(session, admin)
        }
        return try await finishMFA(principal, outcome: outcome, address: address, stage: "enrolment")
    }

    /// The second factor for an admin with TOTP: a current TOTP code, or one unused
    /// recovery code. Returns a new `aal2` session that replaces the caller's.
    public func challenge(_ principal: AdminPrincipal, code: String, address: String) async throws -> AdminTokenPair {
        guard principal.admin.totpEnrolled else {
            throw IdentityError(
                status: 409, code: "mfa_not_enrolled", message: "this account has no TOTP enrolment to challenge",
                hint: "enrol at POST /v1/admin/mfa/totp/enroll, then confirm at POST /v1/admin/mfa/totp/verify")
        }
        let code = Self.trimmedCode(code)
        guard !code.isEmpty, code.utf8.count <= 64 else {
            throw IdentityError.invalidField("code", "code is required: the 6 digits your app shows, or a recovery code")
        }
        try await beginMFAAttempt(principal, address: address)
        let box = try mfaSecretBox()
        let now = Date()
        let isTOTP = code.utf8.count == 6 && code.allSatisfy(\.isASCII) && code.allSatisfy(\.isNumber)
        let outcome = try await transaction { connection -> MFAOutcome in
            var method = "totp"
            var remaining: Int?
            if isTOTP {
                let rows = try await connection.query(
                    "SELECT totp_secret, totp_last_step FROM public.secrets WHERE id = $1::uuid FOR UPDATE", [principal.adminID])
                guard let sealed = rows.value("totp_secret") else { return .wrongCode }
                var secret = try box.open(sealed, context: principal.adminID)
                defer { Ed25519.wipe(&secret) }
                guard let step = TOTP(secret: secret).matchingStep(code, at: now) else { return .wrongCode }
                if let last = rows.value("totp_last_step").flatMap({ Int64($0) }), step <= last { return .replayed }
                try await connection.query("UPDATE public.secrets SET totp_last_step = $2 WHERE id = $1::uuid", [principal.adminID, String(step)])
            } else {
                let used = try await connection.query(
                    """
                    UPDATE meltybase.admin_recovery_codes SET used_at = now()
                    WHERE admin_id = $1::uuid AND code_hash = $2 AND active AND used_at IS NULL RETURNING 1
                    """, [principal.adminID, Self.recoveryCodeHash(code)])
                guard !used.rows.isEmpty else { return .wrongCode }
                method = "recovery_code"
                remaining = Int(
                    try await connection.query(
                        "SELECT count(*) AS n FROM meltybase.admin_recovery_codes WHERE admin_id = $1::uuid AND active AND used_at IS NULL",
                        [principal.adminID]
                    ).value("n") ?? "0")
            }
            var details: [String: Any] = ["method": method, "address": address]
            if let remaining { details["recovery_codes_left"] = remaining }
            let session = try await Self.elevate(
                on: connection, principal, admin: principal.admin, amr: ["pwd", method == "totp" ? "otp" : method],
                action: "admin.mfa.challenge", details: details)
            return .elevated(session, principal.admin)
        }
        return try await finishMFA(principal, outcome: outcome, address: address, stage: "challenge")
    }

    // MARK: Pieces

    enum MFAOutcome: Sendable {
        case elevated(AdminSessions.Issued, AdminRecord)
        case wrongCode
        case replayed
    }

    /// A new `aal2` session for `principal`'s admin; the old session is revoked; audited.
    private static func elevate(
        on connection: PostgresConnection, _ principal: AdminPrincipal, admin: AdminRecord, amr: [String], action: String,
        details: [String: Any]
    ) async throws -> AdminSessions.Issued {
        let session = try await AdminSessions.create(on: connection, adminID: admin.id, aal: .aal2, amr: amr)
        try await AdminSessions.revoke(on: connection, sessionID: principal.sessionID, reason: "elevated")
        var details = details
        details["session_id"] = session.sessionID
        details["previous_session_id"] = principal.sessionID
        details["aal"] = "aal2"
        try await AuditChain.append(on: connection, actor: principal.actor, action: action, target: admin.email, details: details)
        return session
    }

    /// Counts the attempt (per admin and address, through Redis; fails closed).
    private func beginMFAAttempt(_ principal: AdminPrincipal, address: String) async throws {
        if case .locked(let seconds, _) = try await mfaThrottle.begin(account: principal.adminID, address: address) {
            try await AuditChain.append(
                to: database, actor: principal.actor, action: "admin.mfa.failed", target: principal.email,
                details: ["reason": "locked", "address": address])
            throw IdentityError(
                status: 429, code: "mfa_locked", message: "too many wrong codes: second-factor checks for this account are locked for \(seconds) s",
                hint: "retry after \(seconds) s", retryAfterSeconds: seconds)
        }
    }

    /// Tokens for an elevated session, or the audited refusal of a wrong or replayed code.
    private func finishMFA(_ principal: AdminPrincipal, outcome: MFAOutcome, address: String, stage: String) async throws -> AdminTokenPair {
        switch outcome {
        case .elevated(let session, let admin):
            do {
                try await mfaThrottle.recordSuccess(account: principal.adminID, address: address)
            } catch {
                logger.warning("could not reset the MFA attempt counter", metadata: ["error": "\(error)"])
            }
            return try await pair(for: admin, session: session)
        case .wrongCode, .replayed:
            let replayed: Bool
            if case .replayed = outcome { replayed = true } else { replayed = false }
            try await mfaThrottle.recordFailure(account: principal.adminID, address: address)
            try await AuditChain.append(
                to: database, actor: principal.actor, action: "admin.mfa.failed", target: principal.email,
                details: ["reason": replayed ? "code_reused" : "wrong_code", "stage": stage, "address": address])
            if replayed {
                throw IdentityError(
                    status: 401, code: "totp_code_reused", message: "this TOTP code (or a later one) has already been used",
                    hint: "wait for the next code in your app")
            }
            throw IdentityError(
                status: 401, code: "invalid_mfa_code", message: "the code is wrong or has expired",
                hint: "enter the current 6-digit code (check the device clock), or an unused recovery code")
        }
    }

    /// `xxxx-xxxx-xxxx-xxxx` in lowercase base32: 80 random bits.
    static func newRecoveryCode() -> String {
        var generator = SystemRandomNumberGenerator()
        let text = Base32.encode((0..<10).map { _ in UInt8.random(in: .min ... .max, using: &generator) }).lowercased()
        return stride(from: 0, to: 16, by: 4).map { offset in
            String(text.dropFirst(offset).prefix(4))
        }.joined(separator: "-")
    }

    /// SHA-256 of the code with case, spaces and dashes removed.
    static func recoveryCodeHash(_ code: String) -> String {
        let normalized = code.lowercased().filter { $0 != "-" && $0 != " " }
        return ByteEncoding.hex(Array(SHA256.hash(data: Array(("meltybase-recovery\n" + normalized).utf8))))
    }

    static func trimmedCode(_ code: String) -> String {
        code.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: " ", with: "")
    }
}
