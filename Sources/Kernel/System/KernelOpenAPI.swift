import Foundation

/// The OpenAPI 3.1 description of the kernel's own routes (`/v1/*`, `/metrics`, the
/// Studio's entry points), served at `GET /v1/openapi.json`. Portal routes (`/p/<portal>/…`)
/// belong to the plugins and are described by them.
///
/// Written by hand, so a test (`KernelOpenAPITests`) compares it with the routes the
/// router registers: a route added without a description, or a description left behind
/// by a removed route, fails it. schemathesis fuzzes the kernel through this document
/// (`Tests/Integration/test_api_fuzz.py`, `docs/api-fuzzing.md`).
enum KernelOpenAPI {
    /// Where the document is served.
    static let path = "/v1/openapi.json"

    /// The document as sorted, compact JSON.
    static func json(version: String) -> [UInt8] {
        let data = (try? JSONSerialization.data(withJSONObject: document(version: version), options: [.sortedKeys, .withoutEscapingSlashes]))
        return Array(data ?? Data("{}".utf8))
    }

    /// Every (method, path) the document describes, as `GET /v1/system/status`.
    static var operations: [String] {
        paths.flatMap { path, item in item.keys.map { "\($0.uppercased()) \(path)" } }.sorted()
    }

    /// The whole document.
    static func document(version: String) -> [String: Any] {
        [
            "openapi": "3.1.0",
            "info": [
                "title": "MeltyBase kernel",
                "version": version,
                "description": """
                The kernel's own routes: the system pulse, setup, licenses, admin sign-in and MFA, \
                the Hub (portals, admins, audit) and metrics. Portal routes under /p/<portal>/ are \
                served by plugins and described by them. Errors are JSON {code, message, hint}.
                """,
            ],
            "paths": paths,
            "components": components,
        ]
    }

    // MARK: Paths

    static var paths: [String: [String: Any]] {
        [
            "/": ["get": operation("Redirects to the Studio (/dashboard)", tag: "studio", auth: .none, responses: ["302": "redirect to /dashboard"])],
            "/dashboard": ["get": operation("The Studio's page", tag: "studio", auth: .none, responses: ["200": "the page (text/html)", "503": "this build has no Studio files"])],
            "/metrics": ["get": operation("Prometheus metrics (text format 0.0.4)", tag: "system", auth: .none, responses: ["200": "metrics (text/plain)"])],
            path: ["get": operation("This document", tag: "system", auth: .none, responses: ["200": "the OpenAPI document"])],
            "/v1/system/status": [
                "get": operation("The pulse: version and whether setup is done", tag: "system", auth: .none, responses: ["200": "{is_initialized, version, pulse}"])
            ],
            "/v1/system/setup": [
                "post": operation(
                    "Initialises the instance: license and the first admin (open once, then 410)", tag: "system", auth: .none,
                    body: object(
                        ["license_key": string, "admin": object(["email": string, "password": string], required: ["email", "password"])],
                        required: ["license_key", "admin"]),
                    responses: ["201": "the license summary", "400": "bad body, license or password", "410": "already initialised"])
            ],
            "/v1/system/echo": [
                "get": operation(
                    "Answers `echo` (the plugin-dispatch benchmark's kernel-native peer)", tag: "system", auth: .none,
                    responses: ["200": "echo (text/plain)"]),
                "post": operation(
                    "Echoes the body (text/plain)", tag: "system", auth: .none, body: ["type": "string"], bodyType: "text/plain",
                    responses: ["200": "the body, or echo when empty", "413": "body over [kernel] body_limit_bytes"]),
            ],
            "/v1/system/plugins": [
                "get": operation(
                    "Loaded plugins, refusals and per-portal status (loopback clients only)", tag: "system", auth: .loopback,
                    responses: ["200": "the plugin report", "403": "not a loopback client"])
            ],
            "/v1/system/license": [
                "get": operation("The instance's license and the seats in use", tag: "license", auth: .admin("aal1"), responses: ["200": "the license summary"]),
                "put": operation(
                    "Replaces the license", tag: "license", auth: .admin("aal2"), body: object(["license_key": string], required: ["license_key"]),
                    responses: ["200": "the new license summary", "400": "the license does not verify", "409": "fewer seats than admins"]),
            ],
            "/v1/system/license/verify": [
                "post": operation(
                    "Checks a license without applying it (open before setup, admin after)", tag: "license", auth: .adminAfterSetup,
                    body: object(["license_key": string], required: ["license_key"]),
                    responses: ["200": "{valid, license}", "400": "the license does not verify"])
            ],
            "/v1/system/license/evaluation": [
                "get": operation(
                    "Whether this machine can issue an evaluation license (loopback, before setup)", tag: "license", auth: .loopback,
                    responses: ["200": "{available, ...}", "403": "not a loopback client", "410": "already initialised"]),
                "post": operation(
                    "Issues an evaluation license (loopback, before setup)", tag: "license", auth: .loopback,
                    responses: ["201": "{license_key, license}", "403": "not a loopback client", "404": "a vendor key is configured", "410": "already initialised"]),
            ],
            "/v1/admin/login": [
                "post": operation(
                    "Signs an admin in with email and password", tag: "admin", auth: .none,
                    body: object(["email": string, "password": string], required: ["email", "password"]),
                    responses: ["200": "a token pair (mfa_required when TOTP is enrolled)", "401": "wrong email or password", "429": "throttled"])
            ],
            "/v1/admin/token": [
                "post": operation(
                    "Exchanges a refresh token for a new pair", tag: "admin", auth: .none,
                    body: object(["refresh_token": string], required: ["refresh_token"]),
                    responses: ["200": "a token pair", "401": "unknown, used or expired refresh token"])
            ],
            "/v1/admin/logout": ["post": operation("Ends the token's session", tag: "admin", auth: .adminPending, responses: ["200": "{signed_out, session_id}"])],
            "/v1/admin/mfa/totp/enroll": [
                "post": operation(
                    "Starts TOTP enrolment (a new pending secret)", tag: "admin", auth: .adminPending, responses: ["200": "{secret, otpauth_uri, qr_svg, recovery_codes}"])
            ],
            "/v1/admin/mfa/totp/verify": [
                "post": operation(
                    "Confirms TOTP enrolment with a code", tag: "admin", auth: .adminPending, body: object(["code": string], required: ["code"]),
                    responses: ["200": "a token pair at aal2", "400": "wrong code"])
            ],
            "/v1/admin/mfa/challenge": [
                "post": operation(
                    "Steps a session up to aal2 with a TOTP or recovery code", tag: "admin", auth: .adminPending,
                    body: object(["code": string], required: ["code"]), responses: ["200": "a token pair at aal2", "401": "wrong code"])
            ],
            "/v1/admin/users": [
                "get": operation("Every admin account", tag: "admin", auth: .admin("aal1"), responses: ["200": "{users}"]),
                "post": operation(
                    "Creates an admin account", tag: "admin", auth: .admin("aal2"),
                    body: object(["email": string, "password": string], required: ["email", "password"]),
                    responses: ["201": "the new admin", "400": "bad email or password", "409": "exists, or no free seat"]),
            ],
            "/v1/hub/plugins": ["get": operation("The plugin report for a signed-in admin", tag: "hub", auth: .admin("aal1"), responses: ["200": "the plugin report"])],
            "/v1/hub/studio/pages": [
                "get": operation(
                    "The Studio pages of plugins enabled by at least one portal (ABI 1.5)", tag: "hub", auth: .admin("aal1"),
                    responses: ["200": "{pages: [{plugin, id, title, module, path, portals}]}"])
            ],
            "/v1/hub/portals": [
                "get": operation("Every portal and its plugins", tag: "hub", auth: .admin("aal1"), responses: ["200": "{portals}"]),
                "post": operation(
                    "Creates a portal (shows its API keys once)", tag: "hub", auth: .admin("aal2"),
                    body: object(["name": string, "plugins": ["type": "array", "items": string]], required: ["name"]),
                    responses: ["201": "{name, plugins, anon_key, service_role_key}", "400": "bad name or plugin", "409": "the portal exists"]),
            ],
            "/v1/hub/portals/{name}": [
                "delete": operation(
                    "Deletes a portal", tag: "hub", auth: .admin("aal2"), parameters: [pathParameter("name")],
                    responses: ["200": "{name, deleted}", "404": "no such portal"])
            ],
            "/v1/hub/portals/{name}/plugins/{plugin}": [
                "post": operation(
                    "Enables a plugin for a portal", tag: "hub", auth: .admin("aal2"), parameters: [pathParameter("name"), pathParameter("plugin")],
                    responses: ["200": "{portal, plugin, enabled}", "400": "unknown plugin", "404": "no such portal"]),
                "delete": operation(
                    "Disables a plugin for a portal", tag: "hub", auth: .admin("aal2"), parameters: [pathParameter("name"), pathParameter("plugin")],
                    responses: ["200": "{portal, plugin, enabled}", "404": "no such portal"]),
            ],
            "/v1/audit": [
                "get": operation(
                    "The audit log, filtered and paged by seq", tag: "audit", auth: .admin("aal1"),
                    parameters: [
                        queryParameter("action", string), queryParameter("actor", string),
                        queryParameter("since", ["type": "string", "description": "RFC 3339 time or a date"]),
                        queryParameter("until", ["type": "string", "description": "RFC 3339 time or a date"]),
                        queryParameter("limit", ["type": "integer", "minimum": 1, "maximum": 1000]),
                        queryParameter("after", ["type": "integer", "minimum": 0, "description": "next_after of the previous page"]),
                    ],
                    responses: ["200": "{entries, next_after}", "400": "a bad or unknown parameter"])
            ],
            "/v1/hub/usage": [
                "get": operation(
                    "Metered usage per portal by hour, day or month (docs/hub.md), as JSON or CSV", tag: "hub", auth: .admin("aal1"),
                    parameters: [
                        queryParameter("portal", string),
                        queryParameter("from", ["type": "string", "description": "ISO 8601 date or time; default: the start of this month"]),
                        queryParameter("to", ["type": "string", "description": "ISO 8601 date or time; default: the end of this hour"]),
                        queryParameter("granularity", ["type": "string", "enum": ["hour", "day", "month"]]),
                        queryParameter("format", ["type": "string", "enum": ["json", "csv"]]),
                    ],
                    responses: [
                        "200": "{portal, from, to, granularity, rows: [{portal, period, metric, dimension, value}]} or text/csv",
                        "400": "a bad or unknown parameter", "404": "no such portal",
                    ])
            ],
            "/v1/hub/quotas": [
                "get": operation(
                    "Each portal's quotas against this month's totals", tag: "hub", auth: .admin("aal1"),
                    responses: ["200": "{tier, metering, quotas: [{portal, metric, quota, soft, hard, total, level}]}"])
            ],
            "/v1/hub/billing": [
                "get": operation(
                    "A portal's bill for a month from the price book", tag: "hub", auth: .admin("aal2"),
                    parameters: [queryParameter("portal", string), queryParameter("period", ["type": "string", "description": "YYYY-MM; default: this month"])],
                    responses: ["200": "{portal, period, tier, currency, base_price, lines, usage_total, total}", "400": "a bad or unknown parameter", "404": "no such portal"])
            ],
            "/v1/audit/verify": [
                "get": operation("Checks the whole audit chain and its checkpoints now", tag: "audit", auth: .admin("aal1"), responses: ["200": "{ok, entries, problem, ...}"])
            ],
        ]
    }

    // MARK: Building blocks

    /// Who may call an operation.
    enum Access {
        /// Anyone.
        case none
        /// Clients on this machine only.
        case loopback
        /// An admin token at this assurance level.
        case admin(String)
        /// An admin token, also one whose session still waits for its second factor.
        case adminPending
        /// Anyone before setup, an admin (aal1) after.
        case adminAfterSetup
    }

    static var string: [String: Any] { ["type": "string"] }

    static func object(_ properties: [String: Any], required: [String]) -> [String: Any] {
        ["type": "object", "properties": properties, "required": required]
    }

    static func pathParameter(_ name: String) -> [String: Any] {
        ["name": name, "in": "path", "required": true, "schema": string]
    }

    static func queryParameter(_ name: String, _ schema: [String: Any]) -> [String: Any] {
        ["name": name, "in": "query", "required": false, "schema": schema]
    }

    static func operation(
        _ summary: String, tag: String, auth: Access, parameters: [[String: Any]] = [], body: [String: Any]? = nil,
        bodyType: String = "application/json", responses: [String: String]
    ) -> [String: Any] {
        var result: [String: Any] = ["summary": summary, "tags": [tag]]
        var answers: [String: Any] = responses.mapValues { ["description": $0] }
        switch auth {
        case .none, .loopback:
            result["security"] = [[String: Any]]()
        case .admin(let aal):
            result["security"] = [["adminBearer": [String]()]]
            result["description"] = "Needs an admin access token at \(aal)."
        case .adminPending:
            result["security"] = [["adminBearer": [String]()]]
            result["description"] = "Needs an admin access token; a session still waiting for its second factor is accepted."
        case .adminAfterSetup:
            result["security"] = [[String: Any](), ["adminBearer": [String]()]]
            result["description"] = "Open before setup; after it needs an admin access token at aal1."
        }
        switch auth {
        case .admin, .adminPending, .adminAfterSetup:
            answers["401"] = answers["401"] ?? ["description": "no, an invalid or an expired admin token"]
            answers["403"] = answers["403"] ?? ["description": "the session's assurance level is too low"]
        case .none, .loopback:
            break
        }
        if !parameters.isEmpty { result["parameters"] = parameters }
        if let body {
            result["requestBody"] = ["required": true, "content": [bodyType: ["schema": body]]]
            if bodyType == "application/json" {
                answers["400"] = answers["400"] ?? ["description": "the body is not the JSON object described"]
            }
        }
        answers["default"] = ["description": "an error", "content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]]]
        result["responses"] = answers
        return result
    }

    static var components: [String: Any] {
        [
            "securitySchemes": [
                "adminBearer": [
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "An admin access token from POST /v1/admin/login (aal2 after POST /v1/admin/mfa/challenge)",
                ]
            ],
            "schemas": [
                "Error": [
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": ["code": string, "message": string, "hint": ["type": ["string", "null"]]],
                ]
            ],
        ]
    }
}
