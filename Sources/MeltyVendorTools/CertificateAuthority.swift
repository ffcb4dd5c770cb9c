import Crypto
import Foundation
import SwiftASN1
import X509

/// Creates an instance certificate authority with a server and an admin client
/// certificate for mTLS (`meltybase certs init`): P-256 ECDSA keys, signed in-process
/// with swift-certificates.
public enum CertificateAuthority {
    /// Default validity of the generated certificates, in days.
    public static let defaultValidityDays = 825

    /// Where `initialize` wrote the six PEM files.
    public struct Files: Sendable, Equatable {
        /// Directory holding the files.
        public var directory: String
        /// Instance CA certificate (`ca.pem`): the `client_ca` of listeners.
        public var caCertificate: String
        /// Instance CA private key (`ca.key`, mode 0600).
        public var caKey: String
        /// Server certificate (`server.pem`): a listener's `tls_certificate`.
        public var serverCertificate: String
        /// Server private key (`server.key`, mode 0600): a listener's `tls_key`.
        public var serverKey: String
        /// Admin client certificate (`admin.pem`, CN=admin).
        public var adminCertificate: String
        /// Admin client private key (`admin.key`, mode 0600).
        public var adminKey: String

        /// The file names `initialize` uses in `directory`.
        public init(directory: String) {
            func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
            self.directory = directory
            caCertificate = path("ca.pem")
            caKey = path("ca.key")
            serverCertificate = path("server.pem")
            serverKey = path("server.key")
            adminCertificate = path("admin.pem")
            adminKey = path("admin.key")
        }

        /// Every path, certificates and keys.
        public var all: [String] { [caCertificate, caKey, serverCertificate, serverKey, adminCertificate, adminKey] }
    }

    /// Creates `ca.pem`/`ca.key`, `server.pem`/`server.key` and `admin.pem`/`admin.key` in
    /// `directory` (created with mode 0700 if missing). The server certificate names
    /// `localhost`, 127.0.0.1, ::1 and each of `hosts` (DNS names or IP addresses).
    /// Refuses when any of the files exists: certificates and keys are never overwritten.
    public static func initialize(
        directory: String, hosts: [String] = [], days: Int = defaultValidityDays, now: Date = Date()
    ) throws(CertificateAuthorityError) -> Files {
        guard (1...36500).contains(days) else { throw CertificateAuthorityError("--days must be from 1 to 36500, found \(days)") }
        for host in hosts { _ = try generalName(for: host) }
        let files = Files(directory: directory)
        var status = stat()
        for path in files.all where lstat(path, &status) == 0 {
            throw CertificateAuthorityError("\(path) already exists; certs init never overwrites certificates or keys: move the old files away or choose another --out directory")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CertificateAuthorityError("cannot create the directory \(directory): \(error.localizedDescription)")
        }

        let pems: [(path: String, text: String, mode: mode_t)]
        do {
            pems = try makePEMs(hosts: hosts, days: days, now: now, files: files)
        } catch let error as CertificateAuthorityError {
            throw error
        } catch {
            throw CertificateAuthorityError("cannot create the certificates: \(error)")
        }
        var written: [String] = []
        for pem in pems {
            do {
                try createFile(pem.path, contents: Array(pem.text.utf8), mode: pem.mode)
                written.append(pem.path)
            } catch {
                for path in written { unlink(path) }
                throw error
            }
        }
        return files
    }

    private static func makePEMs(hosts: [String], days: Int, now: Date, files: Files) throws -> [(path: String, text: String, mode: mode_t)] {
        let notBefore = now.addingTimeInterval(-3600)  // tolerate some clock skew between machines
        let notAfter = now.addingTimeInterval(Double(days) * 86400)

        let caKey = P256.Signing.PrivateKey()
        let caPublicKey = Certificate.PublicKey(caKey.publicKey)
        let caName = try DistinguishedName {
            OrganizationName("MeltyBase")
            CommonName("MeltyBase instance CA")
        }
        let caKeyIdentifier = SubjectKeyIdentifier(hash: caPublicKey)
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: caPublicKey,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                caKeyIdentifier
            },
            issuerPrivateKey: .init(caKey))

        func leaf(commonName: String, usage: ExtendedKeyUsage.Usage, names: [GeneralName]) throws -> (Certificate, P256.Signing.PrivateKey) {
            let key = P256.Signing.PrivateKey()
            let publicKey = Certificate.PublicKey(key.publicKey)
            let subject = try DistinguishedName {
                OrganizationName("MeltyBase")
                CommonName(commonName)
            }
            let certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: publicKey,
                notValidBefore: notBefore, notValidAfter: notAfter, issuer: caName, subject: subject,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([usage])
                    SubjectKeyIdentifier(hash: publicKey)
                    AuthorityKeyIdentifier(keyIdentifier: caKeyIdentifier.keyIdentifier)
                    if !names.isEmpty { SubjectAlternativeNames(names) }
                },
                issuerPrivateKey: .init(caKey))
            return (certificate, key)
        }

        var names: [GeneralName] = [
            .dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
            .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1]))),
        ]
        for host in hosts {
            let name = try generalName(for: host)
            if !names.contains(name) { names.append(name) }
        }
        let server = try leaf(commonName: hosts.first ?? "localhost", usage: .serverAuth, names: names)
        let admin = try leaf(commonName: "admin", usage: .clientAuth, names: [])

        return [
            (files.caCertificate, try ca.serializeAsPEM().pemString + "\n", 0o644),
            (files.caKey, caKey.pemRepresentation + "\n", 0o600),
            (files.serverCertificate, try server.0.serializeAsPEM().pemString + "\n", 0o644),
            (files.serverKey, server.1.pemRepresentation + "\n", 0o600),
            (files.adminCertificate, try admin.0.serializeAsPEM().pemString + "\n", 0o644),
            (files.adminKey, admin.1.pemRepresentation + "\n", 0o600),
        ]
    }

    /// An IP address SAN for `127.0.0.1`/`::1`-style text, else a DNS name SAN.
    private static func generalName(for host: String) throws(CertificateAuthorityError) -> GeneralName {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(withUnsafeBytes(of: &v4) { Array($0) })))
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(withUnsafeBytes(of: &v6) { Array($0) })))
        }
        let valid =
            !host.isEmpty && host.count <= 253
            && host.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "." || $0 == "*"
            }
        guard valid else { throw CertificateAuthorityError("--host \"\(host)\" is neither an IP address nor a DNS name (letters, digits, '-', '.', a leading '*.')") }
        return .dnsName(host.lowercased())
    }

    /// Writes a new file with `mode`; never follows links or replaces an existing file.
    private static func createFile(_ path: String, contents: [UInt8], mode: mode_t) throws(CertificateAuthorityError) {
        do throws(ExclusiveFile.Failure) {
            try ExclusiveFile.create(path, contents: contents, mode: mode)
        } catch {
            throw CertificateAuthorityError("cannot \(error.atCreate ? "create" : "write") \(path): \(error.reason)")
        }
    }
}

/// Why `meltybase certs init` could not create the instance certificates.
public struct CertificateAuthorityError: Error, CustomStringConvertible, Sendable {
    /// What went wrong and what to do about it.
    public let description: String

    init(_ description: String) { self.description = description }
}
