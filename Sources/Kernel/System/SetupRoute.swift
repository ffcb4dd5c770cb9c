import Foundation
import Hummingbird
import MeltyJSON
import NIOCore

/// `POST /v1/system/setup {"license_key": ..., "admin": {"email": ..., "password": ...}}`.
///
/// Answers 201 with the license summary, 400 with `{code, message, hint, field}` for a
/// bad request, license or password (policy violations listed in `violations`), and 410
/// once the instance is initialised.
struct SetupRoute: Sendable {
    let service: SetupService

    func handle(_ request: Request, context: KernelRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 * 1024)
        guard let object = try? JSONDecoder().decode(SetupBody.self, from: Data(body.readableBytesView)) else {
            throw GatewayError(
                status: 400, code: "invalid_json", message: "the body must be a JSON object",
                hint: "send {\"license_key\": \"MB1...\", \"admin\": {\"email\": \"...\", \"password\": \"...\"}}")
        }
        guard let licenseKey = object.licenseKey?.stringValue, !licenseKey.isEmpty else {
            throw Self.fieldError("license_key", "license_key is required (a string)")
        }
        guard let admin = object.admin?.objectValue else { throw Self.fieldError("admin", "admin is required: {\"email\": ..., \"password\": ...}") }
        guard let email = admin["email"]?.stringValue else { throw Self.fieldError("admin.email", "admin.email is required (a string)") }
        guard let password = admin["password"]?.stringValue else { throw Self.fieldError("admin.password", "admin.password is required (a string)") }
        do {
            let outcome = try await service.perform(licenseKey: licenseKey, email: email, password: password)
            let answer = SetupAnswer(
                tier: outcome.license.tier.rawValue, seats: outcome.license.seats, owner: outcome.license.ownerEmail,
                admin: outcome.adminEmail, entryPoint: outcome.entryPoint,
                expiresAt: outcome.license.expiresAt.map { ISO8601DateFormatter().string(from: $0) })
            // Slashes escaped as before (JSONSerialization's default; the admin routes do not escape them).
            let data = try JSONValue.serialize(answer)
            return Response(status: .created, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        } catch let refusal as SetupService.Refusal {
            throw Self.error(for: refusal)
        }
    }

    static func fieldError(_ field: String, _ message: String) -> GatewayError {
        var error = GatewayError(status: 400, code: "invalid_field", message: message, hint: "fix the field \(field)")
        error.extraFields = ["field": field]
        return error
    }

    static func error(for refusal: SetupService.Refusal) -> GatewayError {
        switch refusal {
        case .closed:
            return GatewayError(
                status: 410, code: "setup_closed", message: refusal.description,
                hint: "sign in at /v1/admin/login instead")
        case .invalidField(let field, let message):
            return fieldError(field, message)
        case .license(let error):
            var gatewayError = GatewayError(
                status: 400, code: "license_invalid", message: "\(error)",
                hint: "paste the whole license string as issued (it starts with MB1.)")
            gatewayError.extraFields = ["field": "license_key", "reason": error.reasonCode]
            return gatewayError
        case .weakPassword(let violations):
            var error = GatewayError(
                status: 400, code: "password_policy", message: violations.map(\.description).joined(separator: "; "),
                hint: "use at least 12 characters that are not the email and not a common password")
            error.extraFields = ["field": "admin.password", "violations": violations.map { ["code": $0.code, "message": $0.description] }]
            return error
        }
    }
}

extension SetupRoute {
    /// The request: members checked by the handler, so each refusal names its field
    /// (`license_key`, `admin`, `admin.email`, `admin.password`).
    struct SetupBody: Decodable {
        var licenseKey: JSONValue?
        var admin: JSONValue?

        enum CodingKeys: String, CodingKey {
            case licenseKey = "license_key"
            case admin
        }
    }

    /// The 201 answer; `expires_at` is `null` for a perpetual license.
    struct SetupAnswer: Encodable {
        var isInitialized = true
        var tier: String
        var seats: Int
        var owner: String
        var admin: String
        var entryPoint: String
        @NullWhenAbsent var expiresAt: String?

        enum CodingKeys: String, CodingKey {
            case isInitialized = "is_initialized"
            case tier, seats, owner, admin
            case entryPoint = "entry_point"
            case expiresAt = "expires_at"
        }
    }
}
