import COpenSSLTLS
import Foundation

/// TLS (OpenSSL) over a ``TCPConnection``. OpenSSL reads and writes memory BIOs; this
/// class moves their bytes over the non-blocking socket, so every wait goes through the
/// event loop (and a closed peer never raises SIGPIPE). OpenSSL's error queue is per
/// thread and a task may change threads at each `await`, so errors are read right after
/// the call that made them.
final class TLSChannel {
    private let connection: TCPConnection
    /// The client's shared context (kept alive while this session uses it).
    private let context: TLSClientContext
    private let ssl: OpaquePointer
    /// OpenSSL reads the server's bytes from here (owned by `ssl`).
    private let networkIn: OpaquePointer
    /// OpenSSL writes bytes for the server here (owned by `ssl`).
    private let networkOut: OpaquePointer
    private let host: String
    private let verifies: Bool

    /// Prepares a client session for `settings` on `connection` from the client's `context`
    /// (TLS 1.2 or later, the CA store): SNI for host names, and the host name (or IP
    /// address) checked against the certificate, unless `verifyCertificate` is false.
    init(connection: TCPConnection, settings: SMTPSettings, context: TLSClientContext) throws {
        self.connection = connection
        host = settings.bareHost
        verifies = settings.verifyCertificate
        self.context = context
        ERR_clear_error()
        guard let ssl = SSL_new(context.pointer), let networkIn = BIO_new(BIO_s_mem()), let networkOut = BIO_new(BIO_s_mem()) else {
            let reason = Self.openSSLErrors()
            throw ConnectionProblem.tls("cannot create a TLS session: \(reason)", transient: false)
        }
        self.ssl = ssl
        self.networkIn = networkIn
        self.networkOut = networkOut
        SSL_set_bio(ssl, networkIn, networkOut)
        SSL_set_connect_state(ssl)

        let host = settings.bareHost
        let isAddress = Self.isIPAddress(host)
        if !isAddress {
            // SNI (RFC 6066 allows host names only): SSL_set_tlsext_host_name is a macro.
            _ = host.withCString { name in
                SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: name))
            }
        }
        if settings.verifyCertificate {
            let accepted: Int32
            if isAddress {
                accepted = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
            } else {
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                accepted = SSL_set1_host(ssl, host)
            }
            guard accepted == 1 else {
                throw ConnectionProblem.configuration("cannot check certificates against the host \(host.debugDescription): \(Self.openSSLErrors())")
            }
        }
    }

    deinit {
        SSL_free(ssl)
    }

    /// Runs the handshake; certificate problems name the verify result and what to set.
    func handshake(deadline: ContinuousClock.Instant) async throws {
        while true {
            ERR_clear_error()
            let result = SSL_do_handshake(ssl)
            let error = SSL_get_error(ssl, result)
            let reason = result == 1 ? "" : Self.openSSLErrors()
            let verifyResult = SSL_get_verify_result(ssl)
            try await flush(deadline: deadline)
            if result == 1 { return }
            if error == SSL_ERROR_WANT_READ {
                try await fill(deadline: deadline, duringHandshake: true)
                continue
            }
            if error == SSL_ERROR_WANT_WRITE { continue }
            throw handshakeFailure(reason: reason, verifyResult: verifyResult)
        }
    }

    private func handshakeFailure(reason: String, verifyResult: Int) -> ConnectionProblem {
        if verifies && verifyResult != Int(X509_V_OK) {
            let verifyText = String(cString: X509_verify_cert_error_string(verifyResult))
            let hint: String
            switch Int32(verifyResult) {
            case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
                hint = "the certificate does not name \(host); set host to a name the certificate lists"
            case X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID:
                hint = "the server's certificate is outside its validity period; renew it (or check the clock)"
            default:
                hint = "set ca_file to the PEM certificate of the CA that signed the server's certificate (verify_certificate = false only for testing)"
            }
            return .tls("certificate verify failed: \(verifyText); \(hint)", transient: false)
        }
        let detail = reason.isEmpty ? "the handshake failed" : reason
        return .tls("TLS handshake failed: \(detail); \(Self.portHint)", transient: false)
    }

    /// Decrypted bytes (at most 16 KiB); empty when the server closed TLS cleanly.
    func read(deadline: ContinuousClock.Instant) async throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            ERR_clear_error()
            let count = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            let error = SSL_get_error(ssl, count)
            let reason = count > 0 ? "" : Self.openSSLErrors()
            if count > 0 { return Array(buffer.prefix(Int(count))) }
            // Reading can produce bytes to send (TLS 1.3 key updates, alerts).
            try await flush(deadline: deadline)
            switch error {
            case SSL_ERROR_WANT_READ: try await fill(deadline: deadline, duringHandshake: false)
            case SSL_ERROR_WANT_WRITE: continue
            case SSL_ERROR_ZERO_RETURN: return []
            default: throw ConnectionProblem.tls("TLS read failed: \(reason.isEmpty ? "the connection ended without close_notify" : reason)", transient: true)
            }
        }
    }

    /// Encrypts and sends all of `bytes`.
    func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) async throws {
        guard !bytes.isEmpty else { return }
        while true {
            ERR_clear_error()
            let count = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            let error = SSL_get_error(ssl, count)
            let reason = count > 0 ? "" : Self.openSSLErrors()
            try await flush(deadline: deadline)
            // Memory BIOs take everything: a positive count is the whole buffer.
            if count > 0 { return }
            switch error {
            case SSL_ERROR_WANT_READ: try await fill(deadline: deadline, duringHandshake: false)
            case SSL_ERROR_WANT_WRITE: continue
            default: throw ConnectionProblem.tls("TLS write failed: \(reason)", transient: true)
            }
        }
    }

    /// Sends close_notify if the socket takes it now, then closes the socket.
    func close() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
        connection.writeWithoutWaiting(pendingOutput())
        connection.close()
    }

    /// Sends what OpenSSL wrote to `networkOut`.
    private func flush(deadline: ContinuousClock.Instant) async throws {
        let bytes = pendingOutput()
        if !bytes.isEmpty { try await connection.write(bytes, deadline: deadline) }
    }

    private func pendingOutput() -> [UInt8] {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while BIO_ctrl_pending(networkOut) > 0 {
            let count = chunk.withUnsafeMutableBytes { BIO_read(networkOut, $0.baseAddress, Int32($0.count)) }
            guard count > 0 else { break }
            output += chunk.prefix(Int(count))
        }
        return output
    }

    /// Reads from the socket into `networkIn`.
    private func fill(deadline: ContinuousClock.Instant, duringHandshake: Bool) async throws {
        let bytes = try await connection.read(maximum: 16384, deadline: deadline)
        guard !bytes.isEmpty else {
            if duringHandshake {
                throw ConnectionProblem.tls(
                    "the server closed the connection during the TLS handshake; \(Self.portHint)",
                    transient: true)
            }
            throw ConnectionProblem.closed
        }
        let written = bytes.withUnsafeBytes { BIO_write(networkIn, $0.baseAddress, Int32($0.count)) }
        guard written == Int32(bytes.count) else { throw ConnectionProblem.tls("cannot buffer TLS input", transient: true) }
    }

    /// The OpenSSL error queue of this thread as text (emptied).
    static func openSSLErrors() -> String {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            guard code != 0 else { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return messages.isEmpty ? "no OpenSSL error" : messages.joined(separator: "; ")
    }

    /// What to check when a port does not speak TLS as configured.
    static let portHint = "check that the server speaks TLS on this port (port 465 is implicit TLS: security = \"tls\"; port 587 uses security = \"starttls\")"

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}
