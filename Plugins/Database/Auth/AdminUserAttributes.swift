import Foundation

/// The body of `POST /admin/users` and `PUT /admin/users/<id>` (GoTrue's
/// `AdminUserParams`), checked field by field: a wrong JSON type is a 400 `bad_json` naming
/// the field, strings are bounded, and nothing from the request is force-unwrapped.
struct AdminUserAttributes {
    /// The normalized email (lowercased, trimmed), when given and non-empty.
    var email: String?
    /// The new password (`""` is kept: an update refuses it as weak; creation generates none).
    var password: String?
    /// An imported hash (`POST` only), already checked by ``AdminPasswordHash``.
    var passwordHash: String?
    /// Confirms the email now.
    var emailConfirm = false
    /// `user_metadata` as JSON object text (null members delete keys on update).
    var userMetadata: String?
    /// `app_metadata` as JSON object text (merged over the existing or default object).
    var appMetadata: String?
    /// The JWT `role` claim, trimmed.
    var role: String?
    /// The ban in nanoseconds (`0` lifts it), when `ban_duration` is given.
    var banNanoseconds: Int64?
    /// The caller-chosen id (`POST` only), lowercased.
    var id: String?
    /// The names of the fields present, for the audit entry (never their values).
    var fields: [String] = []

    /// Longest `role` accepted (a Postgres identifier).
    static let maxRoleBytes = 63

    /// Reads `body`; `creating` selects `POST`'s rules (id, password_hash, email required).
    init(_ body: [String: Any], creating: Bool) throws {
        if let raw = try Self.string(body, "email"), !raw.isEmpty {
            email = try Self.email(raw)
            fields.append("email")
        }
        if let phone = try Self.string(body, "phone"), !phone.isEmpty {
            throw AuthFailure(status: 422, code: "phone_provider_disabled", message: "Phone users are not supported: give the user an email")
        }
        password = try Self.string(body, "password")
        if let password {
            guard password.utf8.count <= 1024 else { throw AuthFailure(status: 400, code: "validation_failed", message: "password is longer than 1024 bytes") }
            fields.append("password")
        }
        if let confirm = try Self.bool(body, "email_confirm") {
            emailConfirm = confirm
            fields.append("email_confirm")
        }
        _ = try Self.bool(body, "phone_confirm")
        userMetadata = try Self.object(body, "user_metadata")
        if userMetadata != nil { fields.append("user_metadata") }
        appMetadata = try Self.object(body, "app_metadata")
        if appMetadata != nil { fields.append("app_metadata") }
        if let raw = try Self.string(body, "role") {
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            if !trimmed.isEmpty {
                guard trimmed.utf8.count <= Self.maxRoleBytes, !Self.hasOddCharacters(trimmed) else {
                    throw AuthFailure(
                        status: 400, code: "validation_failed",
                        message: "role must be at most \(Self.maxRoleBytes) bytes without control characters (for example authenticated)")
                }
                // A user's token would then open the whole portal as the service key does.
                guard trimmed != "service_role" else {
                    throw AuthFailure(
                        status: 400, code: "validation_failed",
                        message:
                            "a user's role cannot be service_role: every token of that user would bypass row-level security and reach the admin API; keep users authenticated and use the portal's service_role key on the server"
                    )
                }
                role = trimmed
                fields.append("role")
            }
        }
        if let raw = try Self.string(body, "ban_duration"), !raw.isEmpty {
            banNanoseconds = try AdminBanDuration.nanoseconds(raw)
            fields.append("ban_duration")
        }
        guard creating else { return }
        if let raw = try Self.string(body, "id"), !raw.isEmpty {
            guard raw.utf8.count <= 64, let uuid = UUID(uuidString: raw) else {
                throw AuthFailure(status: 400, code: "validation_failed", message: "ID must conform to the uuid v4 format")
            }
            guard uuid != UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) else {
                throw AuthFailure(status: 400, code: "validation_failed", message: "ID cannot be a nil uuid")
            }
            id = uuid.uuidString.lowercased()
        }
        if let raw = try Self.string(body, "password_hash"), !raw.isEmpty {
            guard raw.utf8.count <= 1024 else { throw AuthFailure(status: 422, code: "validation_failed", message: "password_hash is longer than 1024 bytes") }
            if password != nil {
                throw AuthFailure(status: 400, code: "validation_failed", message: "Only a password or a password hash should be provided")
            }
            passwordHash = try AdminPasswordHash.validated(raw)
            fields.append("password_hash")
        }
        guard email != nil else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "Cannot create a user without either an email or phone")
        }
    }

    // MARK: typed fields

    /// A string field: `nil` when absent or `null`; a 400 when another JSON type.
    static func string(_ body: [String: Any], _ key: String) throws -> String? {
        guard let value = body[key], !(value is NSNull) else { return nil }
        guard let text = value as? String else { throw wrongType(key, "a string") }
        return text
    }

    /// A boolean field: `nil` when absent or `null`; a 400 when another JSON type.
    static func bool(_ body: [String: Any], _ key: String) throws -> Bool? {
        guard let value = body[key], !(value is NSNull) else { return nil }
        // JSON true/false only: Foundation also bridges the numbers 0 and 1 to Bool.
        if let number = value as? NSNumber, String(cString: number.objCType) == "c", let flag = value as? Bool { return flag }
        throw wrongType(key, "true or false")
    }

    /// An object field as JSON text: `nil` when absent or `null`; a 400 when another JSON
    /// type or when it cannot be written back (a number out of range).
    static func object(_ body: [String: Any], _ key: String) throws -> String? {
        guard let value = body[key], !(value is NSNull) else { return nil }
        guard let object = value as? [String: Any] else { throw wrongType(key, "a JSON object") }
        guard let data = try? JSONSerialization.data(withJSONObject: object) else {
            throw AuthFailure(status: 400, code: "validation_failed", message: "\(key) holds a value that cannot be stored (a number out of range?)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    private static func wrongType(_ key: String, _ expected: String) -> AuthFailure {
        AuthFailure(status: 400, code: "bad_json", message: "Could not parse request body as JSON: \(key) must be \(expected)")
    }

    /// The email as sign-up normalizes it, refusing control, format and private-use characters.
    static func email(_ raw: String) throws -> String {
        let email = try AuthHandler.email(["email": raw])
        guard !hasOddCharacters(email) else {
            throw AuthFailure(status: 400, code: "email_address_invalid", message: "Unable to validate email address: it holds control or invisible characters")
        }
        return email
    }

    /// Whether `text` holds a control, format (invisible), private-use, unassigned or
    /// separator character other than a plain space.
    static func hasOddCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains { scalar in
            switch scalar.properties.generalCategory {
            case .control, .format, .privateUse, .unassigned, .surrogate, .lineSeparator, .paragraphSeparator: return true
            case .spaceSeparator: return scalar != " "
            default: return false
            }
        }
    }
}
