import Foundation
import MeltyEd25519

/// The one check of a JWT's header before its signature is verified: three parts and a
/// header that names HS256. jwt-kit verifies with the configured HS256 key whatever the
/// header says; refusing any other `alg` here makes "alg: none" and algorithm confusion
/// explicit failures.
enum HS256HeaderCheck {
    /// Throws ``IdentityError`` 401 `unauthenticated` unless `token` is a JWT whose header
    /// names HS256. `noun` names the token in the message ("the access token"), `kind` the
    /// tokens that are HS256 ("admin").
    static func require(_ token: String, noun: String, kind: String) throws {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = ByteEncoding.fromBase64URL(String(parts[0])),
            let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any]
        else {
            throw IdentityError.unauthenticated("\(noun) is not a JWT")
        }
        guard header["alg"] as? String == "HS256" else {
            throw IdentityError.unauthenticated("\(noun)'s algorithm \"\(header["alg"].map { "\($0)" } ?? "missing")\" is not accepted; \(kind) tokens are HS256")
        }
    }
}
