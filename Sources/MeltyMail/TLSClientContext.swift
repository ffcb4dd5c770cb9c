import COpenSSLTLS

/// The OpenSSL client context of one ``SMTPClient``: TLS 1.2 or later, and the CA
/// certificates (`ca_file` or the system store) loaded once, not for every mail. OpenSSL
/// allows `SSL_new` on a configured context from any thread; nothing changes it after init.
final class TLSClientContext: @unchecked Sendable {
    /// The `SSL_CTX`.
    let pointer: OpaquePointer

    /// A context for `settings` (verifying certificates unless `verifyCertificate` is false).
    init(settings: SMTPSettings) throws {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw ConnectionProblem.tls("cannot create a TLS context: \(TLSChannel.openSSLErrors())", transient: false)
        }
        _ = SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        if settings.verifyCertificate {
            if let caFile = settings.caFile {
                guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
                    let reason = TLSChannel.openSSLErrors()
                    SSL_CTX_free(context)
                    throw ConnectionProblem.configuration("cannot load ca_file \(caFile) (a PEM file of CA certificates): \(reason)")
                }
            } else if SSL_CTX_set_default_verify_paths(context) != 1 {
                let reason = TLSChannel.openSSLErrors()
                SSL_CTX_free(context)
                throw ConnectionProblem.configuration("cannot load the system's CA certificates: \(reason); set ca_file")
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        }
        pointer = context
    }

    deinit {
        SSL_CTX_free(pointer)
    }
}
