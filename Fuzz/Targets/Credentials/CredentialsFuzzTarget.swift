import Crypto
import Foundation
import HTTPTypes
import Logging
import MeltyEd25519

@testable import Kernel

/// libFuzzer target for the credentials a portal request carries: token extraction
/// (`Authorization: Bearer`, `apikey` header, `apikey` query parameter), the JWT checks of
/// ``PortalKeys/verify(portal:token:)`` and ``AdminTokens/verify(_:)`` (header, HS256,
/// signature, claims, expiry), and the credential JSON handed to plugins, all through
/// ``CredentialResolver/credentialJSON(for:portal:query:)`` with fixed test keys.
///
/// Input (see ``FuzzInput``): the first line is sent as `Authorization: Bearer <line>`;
/// header lines `authorization:` and `apikey:` replace or add headers, `query:` is the query
/// string, and `sign-portal: <payload JSON>` / `sign-admin: <payload JSON>` make the target
/// sign that payload with the portal's or the admin key (header JSON from `sign-header:`,
/// else HS256) and send the result as the bearer token, so the claim decoding behind the
/// signature check is reached too.
///
/// A token the target did not sign must never come out as a `portal` or `admin` credential,
/// and a signed one only as the kind of its key.
enum CredentialsFuzzTarget {
    static let portal = "demo"
    static let portalSecret = [UInt8](repeating: 0x11, count: 32)
    static let adminKey = [UInt8](repeating: 0x22, count: 32)

    static let resolverParts: (PortalKeys, AdminIdentity) = FuzzInput.blocking {
        // One folder for every run (the secret box's key file is made once and reused).
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meltybase-fuzz-credentials").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let keys = try! PortalKeys(database: SystemDatabase(conninfo: "host=/nonexistent"), keysDirectory: directory)
        await keys.useSecret(portalSecret, for: portal)
        let database = SystemDatabase(conninfo: "host=/nonexistent")
        let tokens = await AdminTokens(database: database, key: adminKey)
        // No database: a token that verifies reaches the session lookup, which fails.
        let admin = AdminIdentity(
            database: database, state: SystemState(isInitialized: true), redis: nil, keysDirectory: directory,
            logger: Logger(label: "fuzz"), tokens: tokens)
        return (keys, admin)
    }

    /// What one resolution gave: the credential JSON, or the error it threw.
    enum Outcome: Sendable {
        case json([UInt8])
        case failed(String)
    }

    static func signed(header: String, payload: String, key: [UInt8]) -> String {
        let input = ByteEncoding.base64URL(Array(header.utf8)) + "." + ByteEncoding.base64URL(Array(payload.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: key))
        return input + "." + ByteEncoding.base64URL(Array(mac))
    }

    static func run(_ input: FuzzInput) {
        var fields = HTTPFields()
        var signedWith: String?
        var bearer = input.subject
        let header = input.header("sign-header") ?? #"{"alg":"HS256","typ":"JWT"}"#
        if let payload = input.header("sign-portal") {
            bearer = signed(header: header, payload: payload, key: portalSecret)
            signedWith = "portal"
        } else if let payload = input.header("sign-admin") {
            bearer = signed(header: header, payload: payload, key: adminKey)
            signedWith = "admin"
        }
        fields[.authorization] = "Bearer " + bearer
        for (name, value) in input.headers where name == "authorization" || name == "apikey" {
            guard let fieldName = HTTPField.Name(name) else { continue }
            fields[fieldName] = value
        }
        if signedWith != nil { fields[.authorization] = "Bearer " + bearer }
        let query = input.header("query")
        _ = CredentialResolver.token(headers: fields, query: query)

        let (keys, admin) = resolverParts
        let headers = fields
        let outcome: Outcome = FuzzInput.blocking {
            do {
                return .json(
                    try await CredentialResolver(portalKeys: keys, adminIdentity: admin, adminRequiresClientCertificate: false)
                        .credentialJSON(for: headers, portal: portal, query: query))
            } catch {
                return .failed("\(error)")
            }
        }
        guard case .json(let json) = outcome else {
            // Only an admin token that verified gets as far as its session lookup (no database here).
            if signedWith != "admin" { FuzzInput.violated("only a verified admin token reaches the session lookup", "\(outcome) from \(input.text)") }
            return
        }
        FuzzInput.trace("credential: " + String(decoding: json, as: UTF8.self))
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any], let kind = object["kind"] as? String else {
            FuzzInput.violated("the credential JSON is an object with a kind", String(decoding: json, as: UTF8.self))
        }
        switch kind {
        case "none", "invalid": break
        case "portal", "admin":
            if signedWith != kind {
                FuzzInput.violated("only a token signed with its kind's key verifies", "\(kind) from \(input.text)")
            }
        default:
            FuzzInput.violated("the credential kind is none, invalid, portal or admin", kind)
        }
    }
}

/// libFuzzer's entry point.
@_cdecl("LLVMFuzzerTestOneInput")
public func credentialsFuzzTest(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    CredentialsFuzzTarget.run(FuzzInput(data, count))
    return 0
}
