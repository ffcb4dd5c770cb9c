import Foundation
import Kernel
import Logging
import MeltyVendorTools

/// `tls = "auto"` listeners: certificates made on this machine on first start, never shipped.
enum AutomaticTLS {
    /// Where the certificates of `config`'s automatic listeners live: `<data_dir>/certs`.
    static func files(for config: KernelConfig) -> CertificateAuthority.Files {
        CertificateAuthority.Files(directory: (config.dataDirectory as NSString).appendingPathComponent("certs"))
    }

    /// Points automatic listeners at the server certificate and key in `<data_dir>/certs`.
    static func resolvePaths(in config: inout KernelConfig) {
        let files = files(for: config)
        for index in config.listeners.indices where config.listeners[index].automaticTLS {
            config.listeners[index].tlsCertificatePath = files.serverCertificate
            config.listeners[index].tlsKeyPath = files.serverKey
        }
    }

    /// Creates the instance CA and server certificate when an automatic listener needs them
    /// and they are missing (the server certificate names localhost and each listener's host).
    static func createIfMissing(config: KernelConfig, logger: Logger) throws {
        let listeners = config.listeners.filter(\.automaticTLS)
        guard !listeners.isEmpty else { return }
        let files = files(for: config)
        guard !FileManager.default.fileExists(atPath: files.serverCertificate) else { return }
        let hosts = Set(listeners.map(\.host)).subtracting(["127.0.0.1", "::1", "localhost", "0.0.0.0", "::"]).sorted()
        do {
            _ = try CertificateAuthority.initialize(directory: files.directory, hosts: hosts)
        } catch {
            throw CommandError("tls = \"auto\": cannot create the certificates in \(files.directory): \(error.description)")
        }
        logger.notice(
            "tls = \"auto\": created an instance CA and a server certificate in \(files.directory) (keys mode 0600). Clients trust \(files.caCertificate); for a public name use a certificate of your own (tls_certificate, tls_key)."
        )
    }
}
