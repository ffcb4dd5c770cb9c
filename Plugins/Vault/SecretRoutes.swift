import Foundation
import MeltyJSON
import MeltyPluginSDK
import VaultCore

/// The HTTP API below `/p/<portal>/vault`: a thin layer over ``SecretVault`` that checks
/// access, audits, and maps ``VaultError`` to `{code, message, hint}` answers.
struct SecretRoutes {
    let runtime: VaultPlugin.Runtime
    let portal: Portal
    let database: VaultDatabase

    /// The route a path names.
    enum Route: Equatable {
        case collection
        case secret(String)
        case value(String)
        case versions(String)
    }

    static func route(_ path: String) -> Route? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard parts.count >= 2, parts[0] == "v1", parts[1] == "secrets" else { return nil }
        switch parts.count {
        case 2: return .collection
        case 3 where parts[2].isEmpty: return .collection
        case 3: return .secret(parts[2])
        case 4 where parts[3] == "value": return .value(parts[2])
        case 4 where parts[3] == "versions": return .versions(parts[2])
        default: return nil
        }
    }

    func handle(_ request: PluginRequest) async -> PluginResponse {
        guard let route = Self.route(request.path) else {
            return .error(
                status: 404, code: "not_found", message: "the vault has no route \(request.method) \(request.path)",
                hint: "routes live under /v1/secrets; see docs/vault.md")
        }
        let need: CallerAccess.Need
        switch (route, request.method) {
        case (.collection, "GET"), (.secret, "GET"), (.versions, "GET"): need = .metadata
        case (.collection, "POST"), (.secret, "PUT"), (.secret, "DELETE"): need = .write
        case (.value, "GET"): need = .value
        default:
            return .error(
                status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path)",
                hint: "see docs/vault.md for the routes")
        }
        let caller: CallerAccess
        switch CallerAccess.check(request, need: need) {
        case .success(let access): caller = access
        case .failure(let refusal): return refusal.response
        }
        do {
            let response = try await answer(route, request, caller: caller)
            // Metered per portal (docs/hub.md): value reads and changes that succeeded.
            if response.status < 300 {
                switch need {
                case .value: runtime.host.count("vault_reads", portal: portal)
                case .write: runtime.host.count("vault_writes", portal: portal)
                case .metadata: break
                }
            }
            return response
        } catch let refusal as RefusalResponse {
            return refusal.response
        } catch let error as VaultError {
            return Self.response(for: error)
        } catch {
            return .error(status: 500, code: "vault_error", message: "\(error)")
        }
    }

    /// The route's answer (errors are mapped by ``handle(_:)``).
    private func answer(_ route: Route, _ request: PluginRequest, caller: CallerAccess) async throws -> PluginResponse {
        do {
            switch (route, request.method) {
            case (.collection, "GET"): return try await list(request)
            case (.collection, "POST"): return try await write(nil, request, caller: caller)
            case (.secret(let name), "GET"): return try await metadata(name)
            case (.secret(let name), "PUT"): return try await write(name, request, caller: caller)
            case (.secret(let name), "DELETE"): return try await delete(name, request, caller: caller)
            case (.value(let name), _): return try await value(name, request, caller: caller)
            case (.versions(let name), _): return try await versions(name)
            default: return .error(status: 405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path)")
            }
        }
    }

    // MARK: Routes

    private func list(_ request: PluginRequest) async throws -> PluginResponse {
        let includeDeleted = request.queryItems["include_deleted"] == "true"
        let portal = self.portal.name
        let vault = runtime.vault
        let secrets = try await database.run { try await vault.list(portal: portal, includeDeleted: includeDeleted, on: $0) }
        return .json(["secrets": secrets])
    }

    /// `POST /v1/secrets` (`name` from the body, version 1) or `PUT /v1/secrets/<name>`
    /// (`name` from the path, a new version); audited by name and version.
    private func write(_ pathName: String?, _ request: PluginRequest, caller: CallerAccess) async throws -> PluginResponse {
        let body = try WriteBody.decode(request)
        guard let name = pathName ?? body.name else {
            throw RefusalResponse(
                .error(
                    status: 400, code: "invalid_request", message: "the body needs \"name\" (a string)",
                    hint: "{\"name\": \"STRIPE_KEY\", \"value\": \"...\", \"description\": \"optional\"}"))
        }
        let value = try body.requireValue()
        let description = try body.requireValidDescription()
        let (portal, vault) = (self.portal.name, runtime.vault)
        let metadata = try await database.run { connection in
            pathName == nil
                ? try await vault.create(portal: portal, name: name, value: value, description: description, actor: caller.actor, on: connection)
                : try await vault.update(portal: portal, name: name, value: value, description: description, actor: caller.actor, on: connection)
        }
        try? await runtime.audit.append(
            action: pathName == nil ? "vault.secret.create" : "vault.secret.update", target: "secret:\(name)",
            details: ["version": JSONValue(metadata.currentVersion), "actor": JSONValue(caller.actor)], portal: self.portal)
        return .json(metadata, status: pathName == nil ? 201 : 200)
    }

    private func metadata(_ name: String) async throws -> PluginResponse {
        let (portal, vault) = (self.portal.name, runtime.vault)
        return .json(try await database.run { try await vault.metadata(portal: portal, name: name, on: $0) })
    }

    private func versions(_ name: String) async throws -> PluginResponse {
        let (portal, vault) = (self.portal.name, runtime.vault)
        let versions = try await database.run { try await vault.versions(portal: portal, name: name, on: $0) }
        return .json(VersionsAnswer(name: name, versions: versions))
    }

    private func delete(_ name: String, _ request: PluginRequest, caller: CallerAccess) async throws -> PluginResponse {
        let purge = request.queryItems["purge"] == "true"
        let (portal, vault) = (self.portal.name, runtime.vault)
        try await database.run { connection in
            _ = try await vault.delete(portal: portal, name: name, purge: purge, on: connection)
        }
        try? await runtime.audit.append(
            action: purge ? "vault.secret.purge" : "vault.secret.delete", target: "secret:\(name)",
            details: ["actor": JSONValue(caller.actor)], portal: self.portal)
        return .json(DeleteAnswer(name: name, deleted: true, purged: purge))
    }

    /// Decrypts, audits the read by name (never the value), and only then answers; when
    /// the audit log cannot take the entry, the value is not released.
    private func value(_ name: String, _ request: PluginRequest, caller: CallerAccess) async throws -> PluginResponse {
        var version: Int?
        if let text = request.queryItems["version"] {
            guard let number = Int(text), (try? SecretRules.validate(version: number)) != nil else {
                throw RefusalResponse(
                    .error(
                        status: 400, code: "invalid_request", message: "version must be a whole number from 1 to \(SecretRules.maxVersion)",
                        hint: "GET /v1/secrets/<name>/versions lists the versions"))
            }
            version = number
        }
        let (portal, vault) = (self.portal.name, runtime.vault)
        // One round trip for the row (the data key is usually cached), then the audit entry
        // (group-committed by the kernel), and only then the value.
        let revealed = try await database.run { try await vault.reveal(portal: portal, name: name, version: version, on: $0) }
        do {
            try await runtime.audit.append(
                action: "vault.secret.read", target: "secret:\(name)",
                details: ["version": JSONValue(revealed.version), "actor": JSONValue(caller.actor), "via": "http"], portal: self.portal)
        } catch {
            return .error(
                status: 503, code: "audit_unavailable", message: "the read could not be audited, so the value is withheld",
                hint: "check the system database; the kernel log says why")
        }
        return PluginResponse(
            status: 200, headers: [("content-type", "application/json"), ("cache-control", "no-store")],
            body: SecretJSON.valueBody(name: name, version: revealed.version, value: revealed.value))
    }

    // MARK: Bodies and errors

    /// The answer for a ``VaultError``; messages never contain values or key material.
    static func response(for error: VaultError) -> PluginResponse {
        switch error {
        case .invalidArgument(let message):
            return .error(status: 400, code: "invalid_request", message: message)
        case .notFound(let message):
            return .error(status: 404, code: "secret_not_found", message: message)
        case .conflict(let message):
            return .error(status: 409, code: "secret_exists", message: message)
        case .unknownMasterKey, .clusterMasterKey:
            return .error(status: 503, code: "master_key_unavailable", message: error.description)
        case .database(let message):
            return .error(status: 503, code: "database_unavailable", message: "the vault cannot reach the system database: \(message)")
        case .authenticationFailed, .corruptRecord:
            return .error(
                status: 500, code: "secret_integrity_error", message: error.description,
                hint: "the stored record was altered, moved, or the master key is wrong; the value is not released")
        case .invalidConfiguration(let message), .crypto(let message):
            return .error(status: 500, code: "vault_error", message: message)
        }
    }
}

/// `POST /v1/secrets` and `PUT /v1/secrets/<name>`: `{"name"?, "value", "description"?}`.
/// A body that is not an object is refused at once; the fields are checked by the route in
/// the order name, value, description, each refusal a 400 naming the field.
struct WriteBody: Decodable {
    /// The name (`POST`); one that is not a string counts as absent (the path names it on `PUT`).
    var name: String?
    /// The value as bytes this plugin wipes (the decoded `String` is Foundation's copy); nil
    /// when absent or not a string.
    var value: SecretBytes?
    /// The description when it is a string; absent and `null` are nil.
    var description: String?
    /// Whether `description` is present, not `null`, and not a string.
    var descriptionIsInvalid = false

    private enum CodingKeys: String, CodingKey {
        case name, value, description
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try? container.decodeIfPresent(String.self, forKey: .name)
        if let text = try? container.decode(String.self, forKey: .value) {
            var bytes = Array(text.utf8)
            defer { SecretBytes.wipe(&bytes) }
            value = SecretBytes(copying: bytes)
        }
        do {
            description = try container.decodeIfPresent(String.self, forKey: .description)
        } catch {
            descriptionIsInvalid = true
        }
    }

    /// The body of `request`, or the 400 answer when it is not a JSON object.
    static func decode(_ request: PluginRequest) throws -> WriteBody {
        guard let body = try? JSONDecoder().decode(WriteBody.self, from: Data(request.body)) else {
            throw RefusalResponse(
                .error(
                    status: 400, code: "invalid_json", message: "the body must be a JSON object",
                    hint: "send content-type: application/json with {\"value\": \"...\"}"))
        }
        return body
    }

    /// The value, or the 400 answer naming it.
    func requireValue() throws -> SecretBytes {
        guard let value else {
            throw RefusalResponse(
                .error(
                    status: 400, code: "invalid_request", message: "the body needs \"value\" (a string)",
                    hint: "binary values: base64-encode them first"))
        }
        return value
    }

    /// The description, or the 400 answer naming it.
    func requireValidDescription() throws -> String? {
        if descriptionIsInvalid { throw RefusalResponse(.error(status: 400, code: "invalid_request", message: "\"description\" must be a string")) }
        return description
    }
}

/// `GET /v1/secrets/<name>/versions`.
struct VersionsAnswer: Encodable {
    var name: String
    var versions: [SecretVersionInfo]
}

/// `DELETE /v1/secrets/<name>`.
struct DeleteAnswer: Encodable {
    var name: String
    var deleted: Bool
    var purged: Bool
}

/// JSON bodies built straight from secret bytes, so the only copy of a value outside
/// wiped memory is the response itself.
enum SecretJSON {
    /// `{"name":…,"value":…,"version":…}`.
    static func valueBody(name: String, version: Int, value: SecretBytes) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(value.count + name.utf8.count + 48)
        body += Array(#"{"name":"#.utf8)
        JSONStringWriter.append(name.utf8, to: &body)
        body += Array(#","value":"#.utf8)
        value.withUnsafeBytes { JSONStringWriter.append($0, to: &body) }
        body += Array(#","version":\#(version)}"#.utf8)
        return body
    }
}
