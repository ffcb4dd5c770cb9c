import NIOSSL
import X509

/// Reads identities out of verified client certificates (mTLS).
enum ClientCertificate {
    /// The RFC 4514 subject (`CN=admin,O=MeltyBase`), or "" when it cannot be parsed.
    static func subject(of certificate: NIOSSLCertificate) -> String {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return "" }
        return parsed.subject.description
    }
}
