import Crypto
import Foundation
import MeltyJSON
import MeltyPluginSDK
import MeltyPostgres

/// GoTrue's admin API (`/auth/v1/admin/*`) for the service role: users (list, create, get,
/// update, ban, soft and hard delete) and their MFA factors, as supabase-py's
/// `client.auth.admin` calls it. Every change is audited (`auth.admin.*`, no secrets).
extension AuthHandler {
    /// Default page size of `GET /admin/users` (GoTrue's).
    static let adminDefaultPerPage: UInt64 = 50
    /// Largest `per_page` accepted.
    static let adminMaxPerPage: UInt64 = 1000
    /// Largest `page` accepted (keeps the offset far from overflow).
    static let adminMaxPage: UInt64 = 1_000_000_000

    /// Routes `/admin/<path>`; `path` excludes `admin`.
    func adminRoute(_ request: PluginRequest, path: [String], body: [String: Any]) async throws -> PluginResponse {
        try requireServiceRole(request)
        guard path.first == "users" else {
            throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
        }
        switch (request.method, path.count) {
        case ("GET", 1): return try await adminListUsers(request)
        case ("POST", 1): return try await adminCreateUser(request, body)
        case (_, 1): throw Self.methodNotAllowed(request, allowed: "GET, POST")
        default: break
        }
        let userID = try Self.adminUUID(path[1], name: "user_id")
        switch (request.method, path.count, path.count > 2 ? path[2] : "") {
        case ("GET", 2, _): return .json(try await userJSON(userID))
        case ("PUT", 2, _): return try await adminUpdateUser(request, userID: userID, body)
        case ("DELETE", 2, _): return try await adminDeleteUser(request, userID: userID, body)
        case (_, 2, _): throw Self.methodNotAllowed(request, allowed: "GET, PUT, DELETE")
        case ("GET", 3, "factors"): return try await adminListFactors(userID: userID)
        case (_, 3, "factors"): throw Self.methodNotAllowed(request, allowed: "GET")
        case ("DELETE", 4, "factors"):
            return try await adminDeleteFactor(request, userID: userID, factorID: try Self.adminUUID(path[3], name: "factor_id"))
        case (_, 4, "factors"): throw Self.methodNotAllowed(request, allowed: "DELETE")
        default: throw AuthFailure(status: 404, code: "not_found", message: "no auth route \(request.method) \(request.path)")
        }
    }

    /// A path UUID, lowercased; GoTrue answers a malformed one with 404 `validation_failed`.
    static func adminUUID(_ text: String, name: String) throws -> String {
        guard text.utf8.count <= 64, let uuid = UUID(uuidString: text) else {
            throw AuthFailure(status: 404, code: "validation_failed", message: "\(name) must be an UUID")
        }
        return uuid.uuidString.lowercased()
    }

    private static func methodNotAllowed(_ request: PluginRequest, allowed: String) -> AuthFailure {
        AuthFailure(status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path); use \(allowed)")
    }

    // MARK: listing

    /// `GET /admin/users?page=&per_page=&filter=&sort=`: newest first, `x-total-count` and
    /// `link` (`rel="next"`, `rel="last"`) headers as GoTrue.
    private func adminListUsers(_ request: PluginRequest) async throws -> PluginResponse {
        let query = request.queryItems
        let page = max(1, try Self.adminCount(query["page"], name: "page", fallback: 1))
        var perPage = try Self.adminCount(query["per_page"], name: "per_page", fallback: Self.adminDefaultPerPage)
        if perPage == 0 { perPage = Self.adminDefaultPerPage }
        guard perPage <= Self.adminMaxPerPage, page <= Self.adminMaxPage else {
            throw AuthFailure(
                status: 400, code: "validation_failed",
                message: "Bad Pagination Parameters: per_page must be 1...\(Self.adminMaxPerPage) and page 1...\(Self.adminMaxPage)")
        }
        var direction = "DESC"
        if let sort = query["sort"] {
            let parts = sort.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.first == "created_at" else {
                throw AuthFailure(status: 400, code: "validation_failed", message: "Bad Sort Parameters: bad field for sort '\(sort.prefix(64))'")
            }
            if parts.count > 1 {
                switch parts[1].uppercased() {
                case "ASC": direction = "ASC"
                case "DESC": direction = "DESC"
                default:
                    throw AuthFailure(status: 400, code: "validation_failed", message: "Bad Sort Parameters: only 'asc' and 'desc' are allowed")
                }
            }
        }
        let filter = (query["filter"] ?? "").isEmpty ? nil : query["filter"]
        if let filter, filter.utf8.count > 255 {
            throw AuthFailure(status: 400, code: "validation_failed", message: "filter is longer than 255 bytes")
        }
        let condition = """
            ($1::text IS NULL OR position(lower($1::text) in lower(coalesce(u.email, ''))) > 0
              OR position(lower($1::text) in lower(coalesce(u.raw_user_meta_data ->> 'full_name', ''))) > 0)
            """
        let statement = """
            SELECT (SELECT count(*) FROM auth.users u WHERE \(condition))::text,
                   (SELECT coalesce(json_agg(\(Self.userObjectSQL) ORDER BY u.created_at \(direction), u.id \(direction)), '[]')
                    FROM (SELECT * FROM auth.users u WHERE \(condition) ORDER BY u.created_at \(direction), u.id \(direction)
                          LIMIT $2::bigint OFFSET $3::bigint) u)::text
            """
        let offset = (page - 1) * perPage
        let row = try await pool.run { connection in
            try await connection.query(statement, [filter, String(perPage), String(offset)]).rows.first
        }
        let total = UInt64(row?[0] ?? "0") ?? 0
        let users = row?[1] ?? "[]"
        var response = PluginResponse(
            status: 200, headers: [("content-type", "application/json")], body: Array("{\"aud\":\"authenticated\",\"users\":\(users)}".utf8))
        let lastPage = total / perPage + (total % perPage > 0 ? 1 : 0)
        var links: [String] = []
        if lastPage > page { links.append("<\(adminListURL(page: page + 1, perPage: perPage, query: query))>; rel=\"next\"") }
        links.append("<\(adminListURL(page: lastPage, perPage: perPage, query: query))>; rel=\"last\"")
        response.headers.append(("link", links.joined(separator: ", ")))
        response.headers.append(("x-total-count", String(total)))
        response.headers.append(("access-control-expose-headers", "x-total-count, link"))
        return response
    }

    /// A non-negative integer query parameter (GoTrue's `strconv.ParseUint`): digits only.
    private static func adminCount(_ text: String?, name: String, fallback: UInt64) throws -> UInt64 {
        guard let text, !text.isEmpty else { return fallback }
        guard text.utf8.count <= 19, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let value = UInt64(text) else {
            throw AuthFailure(
                status: 400, code: "validation_failed", message: "Bad Pagination Parameters: \(name) must be a whole number, not \"\(text.prefix(32))\"")
        }
        return value
    }

    /// The list URL of another page; `page` first, as supabase-js reads the `link` header.
    private func adminListURL(page: UInt64, perPage: UInt64, query: [String: String]) -> String {
        var parts = ["page=\(page)", "per_page=\(perPage)"]
        for key in ["filter", "sort"] {
            if let value = query[key], !value.isEmpty { parts.append("\(key)=\(Self.percentEncoded(value))") }
        }
        return "/p/\(portal.name)/auth/v1/admin/users?" + parts.joined(separator: "&")
    }

    private static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(byte)))
            default: out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    // MARK: create, update

    /// `(jsonb) - keys whose value is null in $patch`: GoTrue's merge of metadata updates.
    private static func mergeSQL(_ base: String, patch: String) -> String {
        "((\(base)) || \(patch)::jsonb) - ARRAY(SELECT key FROM jsonb_each(\(patch)::jsonb) WHERE jsonb_typeof(value) = 'null')"
    }

    /// `now()` plus the ban in nanoseconds, or `NULL` for no ban (`0`).
    private static func banSQL(_ parameter: String) -> String {
        "CASE WHEN \(parameter)::bigint IS NULL OR \(parameter)::bigint = 0 THEN NULL ELSE now() + make_interval(secs => \(parameter)::bigint::double precision / 1e9::double precision) END"
    }

    /// `POST /admin/users`: GoTrue's `adminUserCreate`; returns the user object.
    private func adminCreateUser(_ request: PluginRequest, _ body: [String: Any]) async throws -> PluginResponse {
        let attributes = try AdminUserAttributes(body, creating: true)
        var encrypted = attributes.passwordHash
        if let password = attributes.password, !password.isEmpty {
            guard password.count >= 8 else { throw AuthFailure.weakPassword }
            encrypted = try await UserPasswords.hash(password)
        }
        let statement = """
            INSERT INTO auth.users (id, email, encrypted_password, email_confirmed_at, raw_user_meta_data, raw_app_meta_data, role, banned_until)
            VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, CASE WHEN $4::boolean THEN now() END, coalesce($5::jsonb, '{}'::jsonb),
                    \(Self.mergeSQL("'{\"provider\": \"email\", \"providers\": [\"email\"]}'::jsonb", patch: "coalesce($6::jsonb, '{}'::jsonb)")),
                    coalesce($7, 'authenticated'), \(Self.banSQL("$8")))
            RETURNING id::text
            """
        let parameters: [String?] = [
            attributes.id, attributes.email, encrypted, attributes.emailConfirm ? "true" : "false", attributes.userMetadata, attributes.appMetadata,
            attributes.role, attributes.banNanoseconds.map { String($0) },
        ]
        let userID: String?
        do {
            userID = try await pool.run { connection in try await connection.query(statement, parameters).scalar }
        } catch let error as PostgresError where error.sqlState == "23505" {
            if (error.detail ?? error.message).contains("(id)") {
                throw AuthFailure(status: 422, code: "user_already_exists", message: "A user with this ID already exists")
            }
            throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered")
        }
        guard let userID else { throw AuthFailure(status: 500, code: "unexpected_failure", message: "Database error creating new user") }
        await adminAudit(
            request, action: "auth.admin.user_created", userID: userID,
            details: ["email": JSONValue(attributes.email ?? ""), "fields": .array(attributes.fields.map { JSONValue($0) })])
        return .json(try await userJSON(userID))
    }

    /// `PUT /admin/users/<id>`: GoTrue's `adminUserUpdate`. Metadata merges key by key (a
    /// `null` member deletes the key); a ban ends the user's sessions.
    private func adminUpdateUser(_ request: PluginRequest, userID: String, _ body: [String: Any]) async throws -> PluginResponse {
        let attributes = try AdminUserAttributes(body, creating: false)
        var assignments: [String] = []
        var parameters: [String?] = [userID]
        func bind(_ value: String?) -> String {
            parameters.append(value)
            return "$\(parameters.count)"
        }
        if let email = attributes.email { assignments.append("email = \(bind(email))") }
        if let password = attributes.password {
            guard password.count >= 8 else { throw AuthFailure.weakPassword }
            let hash = try await UserPasswords.hash(password)
            assignments.append("encrypted_password = \(bind(hash))")
        }
        if let role = attributes.role { assignments.append("role = \(bind(role))") }
        if attributes.emailConfirm { assignments.append("email_confirmed_at = coalesce(email_confirmed_at, now())") }
        if let metadata = attributes.userMetadata { assignments.append("raw_user_meta_data = " + Self.mergeSQL("raw_user_meta_data", patch: bind(metadata))) }
        if let metadata = attributes.appMetadata { assignments.append("raw_app_meta_data = " + Self.mergeSQL("raw_app_meta_data", patch: bind(metadata))) }
        if let ban = attributes.banNanoseconds { assignments.append("banned_until = " + Self.banSQL(bind(String(ban)))) }
        let statement = "UPDATE auth.users SET " + (assignments + ["updated_at = now()"]).joined(separator: ", ") + " WHERE id = $1::uuid RETURNING 1"
        let banning = (attributes.banNanoseconds ?? 0) > 0
        let values = parameters
        let found: Bool
        do {
            found = try await pool.run { connection in
                try await connection.transaction { connection in
                    guard try await connection.query(statement, values).scalar != nil else { return (false, false) }
                    if banning { try await Self.endSessions(userID: userID, on: connection) }
                    return (true, true)
                }
            }
        } catch let error as PostgresError where error.sqlState == "23505" {
            throw AuthFailure(status: 422, code: "email_exists", message: "A user with this email address has already been registered")
        }
        guard found else { throw AuthFailure(status: 404, code: "user_not_found", message: "User not found") }
        var details: [String: JSONValue] = ["fields": .array(attributes.fields.map { JSONValue($0) })]
        if let email = attributes.email { details["email"] = JSONValue(email) }
        if let ban = attributes.banNanoseconds { details["ban_seconds"] = .number(Double(ban / 1_000_000_000)) }
        let action =
            attributes.banNanoseconds.map { $0 > 0 ? "auth.admin.user_banned" : "auth.admin.user_unbanned" } ?? "auth.admin.user_updated"
        await adminAudit(request, action: action, userID: userID, details: details)
        return .json(try await userJSON(userID))
    }

    /// Revokes every session of the user and its refresh tokens.
    private static func endSessions(userID: String, on connection: PostgresConnection) async throws {
        try await connection.query("UPDATE auth.sessions SET revoked_at = now() WHERE user_id = $1::uuid AND revoked_at IS NULL", [userID])
        try await connection.query(
            "UPDATE auth.refresh_tokens t SET revoked = true FROM auth.sessions s WHERE s.id = t.session_id AND s.user_id = $1::uuid AND NOT t.revoked", [userID])
    }

    // MARK: delete

    /// `DELETE /admin/users/<id>` `{should_soft_delete}`: hard deletion removes the row (its
    /// sessions, tokens and factors cascade); soft deletion keeps it with `deleted_at`, the
    /// email obfuscated as GoTrue does (so the address can sign up again), no password, no
    /// factors and no sessions.
    private func adminDeleteUser(_ request: PluginRequest, userID: String, _ body: [String: Any]) async throws -> PluginResponse {
        let soft = try AdminUserAttributes.bool(body, "should_soft_delete") ?? false
        let email: String??
        do {
            email = try await pool.run { connection in
                try await connection.transaction { connection -> (value: String??, commit: Bool) in
                    guard let row = try await connection.query("SELECT email, email_change, deleted_at::text FROM auth.users WHERE id = $1::uuid FOR UPDATE", [userID]).rows.first
                    else { return (nil, false) }
                    if !soft {
                        try await connection.query("DELETE FROM auth.users WHERE id = $1::uuid", [userID])
                        return (row[0], true)
                    }
                    if row[2] != nil { return (row[0], false) }
                    let change = row[1].flatMap { $0.isEmpty ? nil : Self.obfuscated(userID: userID, $0) }
                    try await connection.query(
                        """
                        UPDATE auth.users SET email = $2, email_change = $3, encrypted_password = NULL, deleted_at = now(), updated_at = now()
                        WHERE id = $1::uuid
                        """, [userID, Self.obfuscated(userID: userID, row[0] ?? ""), change])
                    try await connection.query("DELETE FROM auth.mfa_factors WHERE user_id = $1::uuid", [userID])
                    try await connection.query("DELETE FROM auth.sessions WHERE user_id = $1::uuid", [userID])
                    // Pending links and codes (AuthHandler+Email.swift) die with the account, as in GoTrue.
                    try await connection.query("DELETE FROM auth.one_time_tokens WHERE user_id = $1::uuid", [userID])
                    return (row[0], true)
                }
            }
        } catch let error as PostgresError where error.sqlState == "23503" {
            throw AuthFailure(
                status: 409, code: "conflict",
                message: "The user is still referenced by a row of another table (\(error.detail ?? error.message)); delete that row, "
                    + "declare the foreign key ON DELETE CASCADE or SET NULL, or soft-delete the user")
        }
        guard let email else { throw AuthFailure(status: 404, code: "user_not_found", message: "User not found") }
        await adminAudit(
            request, action: soft ? "auth.admin.user_soft_deleted" : "auth.admin.user_deleted", userID: userID,
            details: ["email": JSONValue(email)])
        return .json([String: Any]())
    }

    /// GoTrue's `obfuscateValue`: unpadded base64url of SHA-256(user id + value).
    static func obfuscated(userID: String, _ value: String) -> String {
        AuthEncoding.base64URL(SHA256.hash(data: Data((userID + value).utf8)))
    }

    // MARK: factors

    /// `GET /admin/users/<id>/factors`: the user's factors (GoTrue's `user.Factors`).
    private func adminListFactors(userID: String) async throws -> PluginResponse {
        let user = try await userJSON(userID)
        return .json(user["factors"] ?? [Any]())
    }

    /// `DELETE /admin/users/<id>/factors/<factor_id>`: removes the factor and downgrades the
    /// sessions it raised to `aal1`; returns the factor.
    private func adminDeleteFactor(_ request: PluginRequest, userID: String, factorID: String) async throws -> PluginResponse {
        _ = try await userJSON(userID)
        let text: String? = try await pool.run { connection in
            try await connection.transaction { connection in
                let factor = try await connection.query(
                    """
                    DELETE FROM auth.mfa_factors f WHERE f.id = $1::uuid AND f.user_id = $2::uuid
                    RETURNING json_build_object('id', f.id, 'friendly_name', f.friendly_name, 'factor_type', f.factor_type, 'status', f.status,
                                                'created_at', f.created_at, 'updated_at', f.updated_at)::text
                    """, [factorID, userID]
                ).scalar
                guard let factor else { return (nil, false) }
                try await connection.query("UPDATE auth.sessions SET aal = 'aal1', factor_id = NULL WHERE factor_id = $1::uuid", [factorID])
                return (factor, true)
            }
        }
        guard let text else { throw AuthFailure(status: 404, code: "mfa_factor_not_found", message: "Factor not found") }
        await adminAudit(request, action: "auth.admin.factor_deleted", userID: userID, details: ["factor_id": JSONValue(factorID)])
        return PluginResponse(status: 200, headers: [("content-type", "application/json")], body: Array(text.utf8))
    }

    // MARK: sign-in support

    /// Refuses a refresh token of a banned user (GoTrue: 400 `user_banned`).
    func refuseBannedRefresh(tokenHash: String) async throws {
        let banned: String? = try await pool.run { connection in
            try await connection.query(
                """
                SELECT 1 FROM auth.refresh_tokens t JOIN auth.sessions s ON s.id = t.session_id JOIN auth.users u ON u.id = s.user_id
                WHERE t.token_hash = $1 AND (u.banned_until > now() OR u.deleted_at IS NOT NULL)
                """, [tokenHash]
            ).scalar
        }
        if banned != nil { throw AuthFailure(status: 400, code: "user_banned", message: "Invalid Refresh Token: User Banned") }
    }

    /// Checks a password against a stored hash: Argon2id (libargon2) or an imported bcrypt
    /// hash (pgcrypto), which a match replaces by an Argon2id hash.
    func verifyStoredPassword(_ password: String, against encoded: String) async -> Bool {
        guard AdminPasswordHash.isBcrypt(encoded) else { return await UserPasswords.verify(password, against: encoded) }
        guard await AdminPasswordHash.verifyBcrypt(password, against: encoded, pool: pool) else { return false }
        if let upgraded = try? await UserPasswords.hash(password) {
            _ = try? await pool.run { connection in
                try await connection.query("UPDATE auth.users SET encrypted_password = $1 WHERE encrypted_password = $2", [upgraded, encoded])
            }
        }
        return true
    }

    // MARK: audit

    /// Records an admin change (`auth.admin.*`) with who made it; a failure is logged, not
    /// returned (the change is committed).
    private func adminAudit(_ request: PluginRequest, action: String, userID: String, details: [String: JSONValue]) async {
        var details = details
        let credential = request.credential
        details["actor"] = JSONValue(credential.kind == .admin ? "admin:\(credential.subject ?? "")" : "service_role")
        details["user_id"] = JSONValue(userID)
        do {
            try await host.audit(action: action, target: "auth.users:\(userID)", details: details, portal: portal)
        } catch {
            host.log(.warning, "auth: could not audit \(action) of user \(userID): \(error)", portal: portal)
        }
    }
}
