import Foundation
import Hummingbird
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
            try await HubHTTP.run {
                if state.isInitialized {
                    guard let identity else { throw Self.closed }
                    _ = try await identity.requireAdmin(request.headers[.authorization], aal: .aal1)
                }
                let body = try await HubHTTP.object(request, expected: "{\"license_key\": \"MB1...\"}")
                guard let key = body["license_key"] as? String, !key.isEmpty else {
                    throw SetupRoute.fieldError("license_key", "license_key is required (a string)")
                }
                do throws(LicenseError) {
                    let license = try LicenseVerifier(publicKeyHex: publicKey).verify(key)
                    return HubHTTP.json(["valid": true, "license": Self.summary(license, evaluation: evaluation)])
                } catch {
                    throw SetupRoute.error(for: .license(error))
                }
            }
        }
        router.get("/v1/system/license/evaluation") { _, context in
            try Self.guardEvaluation(state: state, context: context)
            guard evaluation != nil else {
                return HubHTTP.json([
                    "available": false,
                    "reason": "this instance accepts only licenses signed by the vendor key configured in [license] public_key",
                ])
            }
            return HubHTTP.json([
                "available": true, "tier": EvaluationLicense.tier.rawValue, "seats": EvaluationLicense.seats,
                "days": Int(EvaluationLicense.validity / 86_400), "owner": EvaluationLicense.ownerEmail,
            ])
        }
        router.post("/v1/system/license/evaluation") { _, context in
            try Self.guardEvaluation(state: state, context: context)
            guard let evaluation else {
                throw GatewayError(status: 404, code: "evaluation_unavailable",
                                   message: "this instance accepts only licenses signed by the vendor key configured in [license] public_key",
                                   hint: "paste the license you received from the vendor")
            }
            do throws(LicenseIssuerError) {
                let issued = try evaluation.issue()
                return HubHTTP.json(["license_key": issued.key, "license": Self.summary(issued.license, evaluation: evaluation)], status: .created)
            } catch {
                throw GatewayError(status: 500, code: "evaluation_failed", message: error.description,
                                   hint: "check the data directory's \(EvaluationLicense.secretKeyFileName) (mode 0600)")
            }
        }
    }

    static var closed: GatewayError { SetupRoute.error(for: .closed) }

    /// Evaluation licenses are for the person at this machine, and only until setup.
    static func guardEvaluation(state: SystemState, context: KernelRequestContext) throws {
        guard context.remoteAddress?.isLoopback ?? false else {
            throw GatewayError(status: 403, code: "loopback_only", message: "evaluation licenses are only offered to clients on this machine",
                               hint: "open the Studio from the machine that runs the kernel, or configure [license] public_key and use a vendor license")
        }
        if state.isInitialized { throw closed }
    }

    /// What the wizard shows of a verified license.
    static func summary(_ license: License, evaluation: EvaluationLicense?) -> [String: Any] {
        [
            "id": license.id, "tier": license.tier.rawValue, "seats": license.seats, "owner": license.ownerEmail,
            "owner_name": license.ownerName, "issued_at": License.formatTimestamp(license.issuedAt),
            "expires_at": license.expiresAt.map { License.formatTimestamp($0) } ?? NSNull(),
            "evaluation": evaluation != nil,
        ]
    }
}
