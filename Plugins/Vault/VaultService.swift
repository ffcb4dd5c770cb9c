import Foundation
import MeltyJSON
import MeltyPluginSDK
import VaultCore

/// The `vault.v1` JSON service for other plugins (Edge injects secrets into functions,
/// Intelligence reads LLM API keys). The kernel hands the call this plugin's instance for
/// the *caller's* portal, and refuses the lookup where the vault is not enabled, so a
/// caller only ever sees its own portal's secrets.
///
/// Every call carries `caller`: the credential of the request the calling plugin serves, as
/// the kernel verified it (the SDK's `callService(..., caller:)` adds it). The same rules as
/// the HTTP routes apply to it (``CallerAccess``): values only for `service_role` or an
/// aal2 admin, names for an admin or `service_role`. A call without one is refused, so a
/// plugin that relays an anonymous request cannot read secrets for it.
///
/// Methods:
/// - `get {"caller": c, "name": s, "version"?: n}` → `{"name", "version", "value"}` (audited as
///   `vault.secret.read` with `via: vault.v1` and the caller)
/// - `list {"caller": c}` → `{"secrets": [metadata]}` (no values)
enum VaultService {
    /// A call's argument: `{"caller", "name"?, "version"?}` (other members are ignored; the
    /// members are checked by the method, so a wrong type gets that method's message).
    struct Arguments: Decodable {
        var caller: JSONValue?
        var name: JSONValue?
        var version: JSONValue?
    }

    static func call(plugin: VaultPlugin, method: String, argument: [UInt8]) async throws -> [UInt8] {
        guard let runtime = VaultPlugin.runtime else { throw PluginError.unavailable("vault.v1: the vault plugin is not started") }
        let arguments: Arguments
        do {
            arguments = argument.isEmpty ? Arguments() : try JSONDecoder().decode(Arguments.self, from: Data(argument))
        } catch {
            throw PluginError.invalid("vault.v1 \(method): the argument must be a JSON object")
        }
        let (portal, vault) = (plugin.portal.name, runtime.vault)
        guard let caller = arguments.caller, case .object = caller, let callerJSON = try? JSONValue.serialize(caller) else {
            throw PluginError.refused("vault.v1 \(method): pass the caller's credential as \"caller\" (the SDK's callService(..., caller: request.credential))")
        }
        let access: CallerAccess
        switch CallerAccess.check(PluginCredential(json: callerJSON), need: method == "get" ? .value : .metadata) {
        case .success(let granted): access = granted
        case .failure(let refusal):
            let reason = (try? JSONDecoder().decode(PluginResponse.ErrorBody.self, from: Data(refusal.response.body)))?.message ?? "refused"
            throw PluginError.refused("vault.v1 \(method): \(reason)")
        }
        do {
            switch method {
            case "get":
                guard let name = arguments.name?.stringValue else { throw PluginError.invalid("vault.v1 get: pass {\"name\": \"...\"}") }
                var version: Int?
                if let raw = arguments.version {
                    guard let number = raw.intValue, number > 0 else { throw PluginError.invalid("vault.v1 get: version must be a positive integer") }
                    version = number
                }
                let revealed = try await plugin.database.run { try await vault.reveal(portal: portal, name: name, version: version, on: $0) }
                do {
                    try await runtime.audit.append(
                        action: "vault.secret.read", target: "secret:\(name)",
                        details: ["version": JSONValue(revealed.version), "via": "vault.v1", "caller": JSONValue(access.actor)], portal: plugin.portal)
                } catch {
                    throw PluginError.unavailable("vault.v1 get: the read could not be audited, so the value is withheld")
                }
                runtime.host.count("vault_reads", portal: plugin.portal)
                return SecretJSON.valueBody(name: name, version: revealed.version, value: revealed.value)
            case "list":
                let secrets = try await plugin.database.run { try await vault.list(portal: portal, on: $0) }
                return try JSONValue.serialize(["secrets": secrets])
            default:
                throw PluginError.notFound("vault.v1 has no method \(method); methods: get, list")
            }
        } catch let error as VaultError {
            switch error {
            case .notFound(let message): throw PluginError.notFound("vault.v1 \(method): \(message)")
            case .invalidArgument(let message): throw PluginError.invalid("vault.v1 \(method): \(message)")
            default: throw PluginError.unavailable("vault.v1 \(method): \(error.description)")
            }
        }
    }
}
