import EdgeCore
import EdgeWorkers
import Foundation
import MeltyJSON
import MeltyPluginSDK

/// The admin API at `/p/<portal>/edge/v1/...` for the portal's service_role key and kernel
/// admins (the Studio's Edge page and scripts use it):
///
/// | route | what | who |
/// |---|---|---|
/// | `GET /v1/functions` | functions with their active version and live counters | service_role, admin |
/// | `POST /v1/functions` | deploy `{name, files: {path: text}, entrypoint?, verify_jwt?, allow_net?, secrets?, limits?, env?}` | service_role, admin at aal2 |
/// | `GET /v1/functions/<name>` | one function and its versions | service_role, admin |
/// | `POST /v1/functions/<name>/rollback` | `{version?}`: make an older version active (default: the one before) | service_role, admin at aal2 |
/// | `DELETE /v1/functions/<name>` | the function, its versions and logs | service_role, admin at aal2 |
/// | `GET /v1/functions/<name>/logs?after=<id>&limit=<n>` | log lines, oldest first, after a line id | service_role, admin |
struct EdgeAdminRoutes {
    let functions: PortalFunctions
    var runtime: EdgeRuntime { functions.runtime }
    var portal: Portal { functions.portal }

    /// Answers one admin request.
    func handle(_ request: PluginRequest) async -> PluginResponse {
        do {
            return try await route(request)
        } catch let refusal as EdgeRouteError {
            return refusal.response
        } catch let rejection as EdgeDeployRejection {
            return .json(
                JSONValue.object([
                    "code": .string(rejection.code.rawValue), "message": .string(rejection.errors.first?.description ?? "refused"),
                    "hint": .string("fix the code and deploy again; nothing was deployed"),
                    "errors": .array(rejection.errors.map(\.json)),
                ]), status: 400)
        } catch let error as EdgeDeployError {
            return .json(
                JSONValue.object([
                    "code": .string(error.code.rawValue), "message": .string(error.description), "hint": .null, "errors": .array([error.json]),
                ]), status: 400)
        } catch {
            return .error(status: 503, code: "edge_unavailable", message: "the request could not be completed: \(error)")
        }
    }

    private func route(_ request: PluginRequest) async throws -> PluginResponse {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard segments.count >= 2, segments[0] == "v1", segments[1] == "functions" else {
            throw EdgeRouteError(status: 404, code: "route_not_found", message: "no Edge admin route \(request.method) \(request.path)", hint: "see docs/edge.md")
        }
        switch (request.method, segments.count) {
        case ("GET", 2):
            _ = try authorize(request, change: false)
            return try await list()
        case ("POST", 2):
            let actor = try authorize(request, change: true)
            let (name, bundle) = try FunctionBundle.decode(json: request.body)
            let deployed = try await FunctionDeployer(runtime: runtime).deploy(
                portal: portal.name, name: name, bundle: bundle, createdBy: actor, functions: functions)
            try await audit("edge.function.deploy", name: name, details: ["version": .number(Double(deployed.version)), "sha256": .string(deployed.sha256)])
            return .json(
                JSONValue.object([
                    "name": .string(name.value), "version": .number(Double(deployed.version)), "sha256": .string(deployed.sha256),
                    "verify_jwt": .bool(bundle.manifest.verifyJWT), "entrypoint": .string(bundle.entrypoint),
                ]), status: 201)
        case ("GET", 3):
            _ = try authorize(request, change: false)
            return try await describe(try name(segments[2]))
        case ("DELETE", 3):
            _ = try authorize(request, change: true)
            let name = try name(segments[2])
            do {
                try await runtime.store.delete(portal: portal.name, name: name)
            } catch {
                if case .functionNotFound = error { throw notFound(name) }
                throw error
            }
            await functions.forget(name)
            try await audit("edge.function.delete", name: name, details: [:])
            return PluginResponse(status: 204)
        case ("POST", 4) where segments[3] == "rollback":
            _ = try authorize(request, change: true)
            let name = try name(segments[2])
            var wanted: Int?
            let body = request.body
            if !body.isEmpty {
                guard let object = JSONValue.object(json: body) else {
                    throw EdgeRouteError(status: 400, code: "invalid_json", message: "the body must be a JSON object like {\"version\": 2}")
                }
                if let raw = object["version"] {
                    guard let number = raw.intValue, number > 0 else {
                        throw EdgeRouteError(status: 400, code: "invalid_version", message: "version must be a positive whole number")
                    }
                    wanted = number
                }
            }
            let version: Int
            do {
                version = try await runtime.store.rollback(portal: portal.name, name: name, to: wanted).activeVersion
            } catch {
                throw EdgeRouteError(status: 404, code: "version_not_found", message: "\(error)")
            }
            _ = try await functions.activate(name, version: version)
            try await audit("edge.function.rollback", name: name, details: ["version": .number(Double(version))])
            return .json(JSONValue.object(["name": .string(name.value), "active_version": .number(Double(version))]))
        case ("GET", 4) where segments[3] == "logs":
            _ = try authorize(request, change: false)
            let name = try name(segments[2])
            let items = request.queryItems
            let after = try Self.integer(items["after"], name: "after", range: 0...Int(Int64.max), default: 0)
            let limit = try Self.integer(items["limit"], name: "limit", range: 1...1000, default: 100)
            await runtime.logs.flush()
            let lines = try await runtime.store.logs(portal: portal.name, name: name, after: Int64(after), limit: limit)
            return .json(JSONValue.object(["lines": .array(lines.map(\.json))]))
        default:
            throw EdgeRouteError(status: 404, code: "route_not_found", message: "no Edge admin route \(request.method) \(request.path)", hint: "see docs/edge.md")
        }
    }

    private func list() async throws -> PluginResponse {
        let records = try await runtime.store.functions(portal: portal.name)
        let live = functions.stats
        return .json(
            JSONValue.object([
                "functions": .array(
                    records.map { record in
                        var object = record.json
                        if let warm = live[record.name.value] {
                            object["warm_version"] = .number(Double(warm.version))
                            object["workers"] = .number(Double(warm.stats.workers))
                            object["in_flight"] = .number(Double(warm.stats.inFlight))
                            object["invocations"] = .number(Double(warm.stats.invocations))
                            object["restarts"] = .number(Double(warm.stats.restarts))
                        }
                        return .object(object)
                    })
            ]))
    }

    private func describe(_ name: FunctionName) async throws -> PluginResponse {
        guard let record = try await runtime.store.function(portal: portal.name, name: name) else { throw notFound(name) }
        let versions = try await runtime.store.versions(portal: portal.name, name: name)
        var object = record.json
        object["versions"] = .array(versions.map { .object($0.json) })
        return .json(JSONValue.object(object))
    }

    /// service_role, or an admin (at aal2 for changes); the actor's name for audit entries.
    private func authorize(_ request: PluginRequest, change: Bool) throws -> String {
        let credential = request.credential
        switch credential.kind {
        case .portal where credential.role == "service_role":
            return "service_role"
        case .admin:
            if change, credential.aal != "aal2" {
                throw EdgeRouteError(
                    status: 403, code: "aal2_required", message: "changing functions needs an admin token at aal2", hint: "step up with POST /v1/admin/mfa/challenge")
            }
            return "admin:\(credential.subject ?? "unknown")"
        case .portal:
            throw EdgeRouteError(
                status: 403, code: "service_role_required",
                message: "the Edge admin API answers only the portal's service_role key or a kernel admin; this key has role \(credential.role ?? "none")")
        case .invalid:
            throw EdgeRouteError(status: 401, code: "invalid_credential", message: "the credential was refused: \(credential.reason ?? "it does not verify")")
        default:
            throw EdgeRouteError(status: 401, code: "credential_required", message: "the Edge admin API needs a credential", hint: "send Authorization: Bearer <service_role key>")
        }
    }

    private func name(_ text: String) throws -> FunctionName {
        do {
            return try FunctionName(text.removingPercentEncoding ?? text)
        } catch {
            throw EdgeRouteError(status: 404, code: "function_not_found", message: "\"\(text.prefix(80))\" is not a function name: \(error.message)")
        }
    }

    private func notFound(_ name: FunctionName) -> EdgeRouteError {
        EdgeRouteError(status: 404, code: "function_not_found", message: "portal \"\(portal.name)\" has no function \"\(name)\"")
    }

    private func audit(_ action: String, name: FunctionName, details: [String: JSONValue]) async throws {
        do {
            try await runtime.host.audit(action: action, target: "function:\(name)", details: details, portal: portal)
        } catch {
            runtime.host.log(.error, "edge: \(action) of \(name) done but not audited: \(error)", portal: portal)
        }
    }

    static func integer(_ text: String?, name: String, range: ClosedRange<Int>, default fallback: Int) throws -> Int {
        guard let text else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw EdgeRouteError(status: 400, code: "invalid_parameter", message: "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }
}
