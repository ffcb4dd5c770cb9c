import ArgumentParser
import Foundation
import Kernel
import MeltyVendorTools

/// `meltybase certs init`: the instance CA, a server and an admin client certificate for mTLS.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Create the certificates for TLS and mTLS (instance CA, server, admin client).",
        subcommands: [Init.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create an instance CA, a server certificate and an admin client certificate.",
            discussion: """
                Writes ca.pem/ca.key (the instance CA), server.pem/server.key (for localhost, 127.0.0.1, ::1 and each --host) \
                and admin.pem/admin.key (CN=admin, for clients) with P-256 ECDSA keys. Key files get mode 0600; existing files \
                are never overwritten. Prints the plugins.toml lines that turn on mTLS for the admin routes.

                  meltybase certs init
                  meltybase certs init --out /etc/meltybase/certs --host mb.example.com --host 10.0.0.5 --days 365
                """)

        @OptionGroup var options: ConfigOptions

        @Option(name: .long, help: ArgumentHelp("Directory for the files (default: <data dir>/certs; created with mode 0700).", valueName: "dir"))
        var out: String?

        @Option(name: .long, help: ArgumentHelp("Another DNS name or IP address for the server certificate (repeatable).", valueName: "name"))
        var host: [String] = []

        @Option(name: .long, help: ArgumentHelp("Validity of the certificates in days.", valueName: "n"))
        var days: Int = CertificateAuthority.defaultValidityDays

        func run() throws {
            let directory: String
            if let out {
                directory = URL(fileURLWithPath: out).standardizedFileURL.path
            } else if let dataDir = options.dataDir {
                directory = URL(fileURLWithPath: dataDir).appendingPathComponent("certs").standardizedFileURL.path
            } else {
                do {
                    directory = (try options.load().dataDirectory as NSString).appendingPathComponent("certs")
                } catch let error as CommandError {
                    throw CommandError("\(error.description) (or pass --out DIR or --data-dir DIR)")
                }
            }
            let files: CertificateAuthority.Files
            do {
                files = try CertificateAuthority.initialize(directory: directory, hosts: host, days: days)
            } catch {
                throw CommandError(error.description)
            }
            print(
                """
                wrote \(files.caCertificate) (instance CA certificate)
                wrote \(files.caKey) (instance CA key, mode 0600: keep it safe, it signs client certificates)
                wrote \(files.serverCertificate)
                wrote \(files.serverKey) (mode 0600)
                wrote \(files.adminCertificate) (admin client certificate, CN=admin)
                wrote \(files.adminKey) (mode 0600)

                Paste into plugins.toml (HTTPS, admin routes only with the admin certificate):
                  [[listeners]]
                  host = "127.0.0.1"
                  port = 3000
                  tls_certificate = "\(files.serverCertificate)"
                  tls_key = "\(files.serverKey)"
                  client_ca = "\(files.caCertificate)"
                  client_certificates = "optional"

                  [admin]
                  require_client_certificate = true

                Then: curl --cacert \(files.caCertificate) --cert \(files.adminCertificate) --key \(files.adminKey) https://localhost:3000/v1/hub/portals
                """)
        }
    }
}
