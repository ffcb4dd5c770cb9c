import Foundation
import Hummingbird
import MeltyJSON
import MeltyLicense

/// License checks for the Studio's setup wizard:
///
/// - `POST /v1/system/license/verify {"license_key"}` checks a license against the
///   kernel's license public key without applying it: 200 with what it holds, or 400
///   `license_invalid` with the `reason`. Open before setup (the wizard checks the key
///   before asking for the admin); after setup it needs an admin (aal1).
/// - `GET /v1/system/license/evaluation` says whether this machine can issue an
///   evaluation license (see ``EvaluationLicense``); `POST` issues one. Both only to
///   loopback clients and only before setup.
struct LicenseCheckRoutes: Sendable {
    let state: SystemState
    /// The public key licenses are checked with (the vendor's, or the evaluation key's).
    let publicKey: String?
    let evaluation: EvaluationLicense?
    let identity: AdminIdentity?

    func register(on router: some RouterMethods<KernelRequestContext>) {
        let state = state
        let publicKey = publicKey
        let evaluation = evaluation
        let identity = identity
        router.post("/v1/system/license/verify") { request, _ in
            try await AdminHTTP.run {
                if state.isInitialized {
                    guard let identity else { throw Self.closed }
                    _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                }
                let body = try await AdminHTTP.decode(OptionalLicenseKey.self, from: request, expected: "{\"license_key\": \"MB1...\"}")
                guard let key = body.licenseKey?.stringValue, !key.isEmpty else {
                    throw SetupRoute.fieldError("license_key", "license_key is required (a string)")
                }
                do throws(LicenseError) {
                    let license = try LicenseVerifier(publicKeyHex: publicKey).verify(key)
                    return AdminHTTP.json(Verified(valid: true, license: Self.summary(license, evaluation: evaluation)))
                } catch {
                    throw SetupRoute.error(for: .license(error))
                }
            }
        }
        router.get("/v1/system/license/evaluation") { _, context in
            try Self.guardEvaluation(state: state, context: context)
            guard evaluation != nil else {
                return AdminHTTP.json(
                    EvaluationUnavailable(
                        available: false, reason: "this instance accepts only licenses signed by the vendor key configured in [license] public_key"))
            }
            return AdminHTTP.json(
                EvaluationOffer(
                    available: true, tier: EvaluationLicense.tier.rawValue, seats: EvaluationLicense.seats,
                    days: Int(EvaluationLicense.validity / 86_400), owner: EvaluationLicense.ownerEmail))
        }
        router.post("/v1/system/license/evaluation") { _, context in
            try Self.guardEvaluation(state: state, context: context)
            guard let evaluation else {
                throw GatewayError(
                    status: 404, code: "evaluation_unavailable",
                    message: "this instance accepts only licenses signed by the vendor key configured in [license] public_key",
                    hint: "paste the license you received from the vendor")
            }
            do throws(LicenseIssuerError) {
                let issued = try evaluation.issue()
                return AdminHTTP.json(Issued(licenseKey: issued.key, license: Self.summary(issued.license, evaluation: evaluation)), status: .created)
            } catch {
                throw GatewayError(
                    status: 500, code: "evaluation_failed", message: error.description,
                    hint: "check the key directory's \(EvaluationLicense.secretKeyFileName) (mode 0600; [kernel] keys_dir, default the data directory)")
            }
        }
    }

    static var closed: GatewayError { SetupRoute.error(for: .closed) }

    /// Evaluation licenses are for the person at this machine, and only until setup.
    static func guardEvaluation(state: SystemState, context: KernelRequestContext) throws {
        guard context.isLoopbackClient else {
            throw GatewayError(
                status: 403, code: "loopback_only", message: "evaluation licenses are only offered to clients on this machine",
                hint: "open the Studio from the machine that runs the kernel, or configure [license] public_key and use a vendor license")
        }
        if state.isInitialized { throw closed }
    }

    /// What the wizard shows of a verified license.
    static func summary(_ license: License, evaluation: EvaluationLicense?) -> LicenseView {
        LicenseView(
            id: license.id, tier: license.tier.rawValue, seats: license.seats, owner: license.ownerEmail, ownerName: license.ownerName,
            issuedAt: License.formatTimestamp(license.issuedAt), expiresAt: license.expiresAt.map { License.formatTimestamp($0) },
            evaluation: evaluation != nil)
    }

    /// `{license_key}` where a wrong type is answered like a missing key.
    struct OptionalLicenseKey: Decodable {
        var licenseKey: JSONValue?

        enum CodingKeys: String, CodingKey {
            case licenseKey = "license_key"
        }
    }

    /// A verified license as the wizard shows it (`expires_at` is `null` for a perpetual one).
    struct LicenseView: Encodable {
        var id: String
        var tier: String
        var seats: Int
        var owner: String
        var ownerName: String
        var issuedAt: String
        @NullWhenAbsent var expiresAt: String?
        var evaluation: Bool

        enum CodingKeys: String, CodingKey {
            case id, tier, seats, owner
            case ownerName = "owner_name"
            case issuedAt = "issued_at"
            case expiresAt = "expires_at"
            case evaluation
        }
    }

    /// `POST /v1/system/license/verify`.
    struct Verified: Encodable {
        var valid: Bool
        var license: LicenseView
    }

    /// `POST /v1/system/license/evaluation`.
    struct Issued: Encodable {
        var licenseKey: String
        var license: LicenseView

        enum CodingKeys: String, CodingKey {
            case licenseKey = "license_key"
            case license
        }
    }

    /// `GET /v1/system/license/evaluation` when a vendor key is configured.
    struct EvaluationUnavailable: Encodable {
        var available: Bool
        var reason: String
    }

    /// `GET /v1/system/license/evaluation` before setup, without a vendor key.
    struct EvaluationOffer: Encodable {
        var available: Bool
        var tier: String
        var seats: Int
        var days: Int
        var owner: String
    }
}
