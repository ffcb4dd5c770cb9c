import Foundation
import Hummingbird
import MeltyLicense

/// `GET /v1/system/license` (admin, AAL1): the instance's license summary.
/// `PUT /v1/system/license {"license_key": "MB1..."}`: replaces the instance's license
/// (renewal, more seats, another tier). Needs an AAL2 admin session; the new license must
/// verify with the configured public key and cover the admins that already exist. The
/// change and the audit entry commit together.
struct LicenseRoute: Sendable {
    let identity: AdminIdentity
    let database: SystemDatabase
    let publicKey: String?

    func register(on router: some RouterMethods<KernelRequestContext>) {
        router.get("/v1/system/license") { request, _ in
            try await AdminHTTP.run {
                _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                return AdminHTTP.json(try await identity.licenseSummary())
            }
        }
        router.put("/v1/system/license") { request, _ in
            try await AdminHTTP.run {
                let principal = try await identity.requireAdmin(request.headers[.authorization], aal: .aal2)
                let key = try await AdminHTTP.decode(LicenseKeyBody.self, from: request, expected: "{\"license_key\": \"MB1...\"}").licenseKey
                let license: License
                do throws(LicenseError) {
                    license = try LicenseVerifier(publicKeyHex: publicKey).verify(key)
                } catch {
                    var refusal = GatewayError(
                        status: 400, code: "license_invalid", message: "\(error)",
                        hint: "paste the whole license string as issued (it starts with MB1.)")
                    refusal.extraFields = ["field": "license_key", "reason": error.reasonCode]
                    throw refusal
                }
                let actor = "admin:\(principal.admin.email)"
                try await database.withConnection { connection in
                    try await connection.query("BEGIN")
                    do {
                        let admins = Int(try await connection.query("SELECT count(*) AS n FROM public.secrets WHERE kind = 'admin'").value("n") ?? "0") ?? 0
                        guard license.seats >= admins else {
                            throw GatewayError(
                                status: 409, code: "seats_below_admins",
                                message: "the new license has \(license.seats) seats but \(admins) admin accounts exist",
                                hint: "issue a license with at least \(admins) seats")
                        }
                        let previous = try await connection.query("SELECT license_id FROM meltybase.system_state FOR UPDATE").value("license_id") ?? ""
                        try await connection.query(
                            """
                            UPDATE meltybase.system_state SET license_key = $1, license_id = $2, license_tier = $3,
                                license_seats = $4, license_owner = $5, license_expires_at = $6::timestamptz
                            """,
                            [
                                key, license.id, license.tier.rawValue, String(license.seats), license.ownerEmail,
                                license.expiresAt.map { ISO8601DateFormatter().string(from: $0) },
                            ])
                        try await AuditChain.append(
                            on: connection, actor: actor, action: "license.replace", target: "instance",
                            details: ["previous_license_id": previous, "license_id": license.id, "tier": license.tier.rawValue, "seats": license.seats])
                        try await connection.query("COMMIT")
                    } catch {
                        _ = try? await connection.query("ROLLBACK")
                        throw error
                    }
                }
                return AdminHTTP.json(try await identity.licenseSummary())
            }
        }
    }
}

/// `{license_key}`: a license string to verify or install.
struct LicenseKeyBody: Decodable {
    var licenseKey: String

    enum CodingKeys: String, CodingKey {
        case licenseKey = "license_key"
    }
}
