import AsyncHTTPClient
import Foundation
import MeltyVendorTools
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing

@testable import Kernel

@Suite("mTLS for the admin routes: certs init, optional client certificates, the admin gate", .serialized, .timeLimit(.minutes(3)))
struct AdminCertificateTests {
    static func temporaryDirectory() throws -> String {
        try makeTemporaryDirectory("certs")
    }

    static func mode(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int
    }

    static func openssl(_ arguments: [String], in directory: String) throws -> (status: Int32, output: String) {
        try runProcess("openssl", arguments, directory: directory)
    }

    /// An HTTPS client trusting `ca.pem` of `directory`, presenting `certificate` from `from`.
    static func client(trusting directory: String, certificate: String? = nil, from certificateDirectory: String? = nil) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(directory + "/ca.pem")
        if let certificate {
            let folder = certificateDirectory ?? directory
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(folder + "/\(certificate).pem").map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: folder + "/\(certificate).key", format: .pem))
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
    }

    @Test("meltybase certs init writes a CA, a server and an admin certificate that openssl verifies, keys 0600, never overwriting")
    func certsInit() throws {
        let directory = try Self.temporaryDirectory() + "/certs"
        let result = try LicenseCommandTests.run(["certs", "init", "--out", directory, "--host", "mb.example.com", "--host", "10.1.2.3", "--days", "30"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("client_ca = \"\(directory)/ca.pem\""))
        #expect(result.stdout.contains("require_client_certificate = true"))
        for key in ["ca.key", "server.key", "admin.key"] { #expect(Self.mode(directory + "/" + key) == 0o600, "\(key)") }
        for certificate in ["ca.pem", "server.pem", "admin.pem"] { #expect(Self.mode(directory + "/" + certificate) == 0o644, "\(certificate)") }

        let verify = try Self.openssl(["verify", "-CAfile", "ca.pem", "server.pem", "admin.pem"], in: directory)
        #expect(verify.status == 0, "\(verify.output)")
        #expect(verify.output.contains("server.pem: OK") && verify.output.contains("admin.pem: OK"))
        #expect(try Self.openssl(["verify", "-CAfile", "ca.pem", "-purpose", "sslserver", "server.pem"], in: directory).status == 0)
        #expect(try Self.openssl(["verify", "-CAfile", "ca.pem", "-purpose", "sslclient", "admin.pem"], in: directory).status == 0)
        let server = try Self.openssl(["x509", "-in", "server.pem", "-noout", "-text"], in: directory).output
        for name in ["DNS:localhost", "DNS:mb.example.com", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "IP Address:10.1.2.3", "TLS Web Server Authentication"] {
            #expect(server.contains(name), "\(name)")
        }
        let ca = try Self.openssl(["x509", "-in", "ca.pem", "-noout", "-text"], in: directory).output
        #expect(ca.contains("CA:TRUE") && ca.contains("Certificate Sign"))
        let admin = try Self.openssl(["x509", "-in", "admin.pem", "-noout", "-subject", "-ext", "extendedKeyUsage"], in: directory).output
        #expect(admin.contains("CN=admin") || admin.contains("CN = admin"))
        #expect(admin.contains("TLS Web Client Authentication"))

        let again = try LicenseCommandTests.run(["certs", "init", "--out", directory])
        #expect(again.status != 0)
        #expect(again.stderr.contains("already exists"), "\(again)")
    }

    @Test("optional client certificates: plugins and the pulse stay open, admin routes need the admin certificate, other CAs fail the handshake")
    func adminGate() async throws {
        let root = try Self.temporaryDirectory()
        let certificates = try CertificateAuthority.initialize(directory: root + "/certs").directory
        let rogue = try CertificateAuthority.initialize(directory: root + "/rogue").directory
        let kernel = try await TestKernel.start(
            """
            [[listeners]]
            host = "127.0.0.1"
            port = 0
            tls_certificate = "\(certificates)/server.pem"
            tls_key = "\(certificates)/server.key"
            client_ca = "\(certificates)/ca.pem"
            client_certificates = "optional"

            [admin]
            require_client_certificate = true
            """ + "\n" + examplePluginsTOML)
        #expect(kernel.url.hasPrefix("https://"))

        let anonymous = try Self.client(trusting: certificates)
        let pulse = try await HTTP.request(kernel.url + "/v1/system/status", client: anonymous)
        #expect(pulse.status == 200)
        #expect(HTTP.json(pulse.body)["is_initialized"] as? Bool == false)
        #expect(try await HTTP.request(kernel.url + "/p/demo/echo-c/echo", method: .POST, body: "hi", client: anonymous).status == 200)
        for (path, method) in [("/v1/hub/portals", HTTPMethod.GET), ("/v1/admin/login", .POST), ("/v1/audit", .GET)] {
            let refused = try await HTTP.request(kernel.url + path, method: method, body: method == .POST ? "{}" : nil, client: anonymous)
            #expect(refused.status == 403, "\(path): \(refused.body)")
            let body = HTTP.json(refused.body)
            #expect(body["code"] as? String == "client_certificate_required", "\(path)")
            #expect((body["message"] as? String)?.contains(certificates + "/ca.pem") == true)
            #expect((body["hint"] as? String)?.contains("meltybase certs init") == true)
        }
        // An admin token on a portal route needs the certificate too: the kernel refuses it
        // before any plugin sees the request (a token alone once read every portal's rows).
        let tokens = AdminTokens(database: SystemDatabase(conninfo: kernel.conninfo))
        let now = Date()
        let token = try await tokens.sign(
            AdminAccessClaims(
                sub: .init(value: UUID().uuidString), email: "root@example.com", role: "root", aal: .aal2, amr: ["pwd", "otp"],
                sessionID: UUID().uuidString, iat: .init(value: now), exp: .init(value: now.addingTimeInterval(60))))
        let portalRoute = try await HTTP.request(kernel.url + "/p/demo/echo-swift/credential", headers: [("authorization", "Bearer \(token)")], client: anonymous)
        #expect(portalRoute.status == 403 && HTTP.json(portalRoute.body)["code"] as? String == "client_certificate_required", "\(portalRoute.body)")
        try await anonymous.shutdown()

        let admin = try Self.client(trusting: certificates, certificate: "admin")
        let portals = try await HTTP.request(kernel.url + "/v1/hub/portals", client: admin)
        #expect(portals.status != 403 && HTTP.json(portals.body)["code"] as? String != "client_certificate_required", "\(portals)")
        let login = try await HTTP.request(
            kernel.url + "/v1/admin/login", method: .POST,
            body: #"{"email":"a@b.cc","password":"wrong password"}"#, client: admin)
        #expect(HTTP.json(login.body)["code"] as? String != "client_certificate_required", "\(login)")
        #expect([400, 401, 409, 422, 429].contains(login.status), "\(login)")
        let whoami = HTTP.json(try await HTTP.request(kernel.url + "/p/demo/echo-c/whoami", client: admin).body)
        #expect((whoami["client_cert"] as? String)?.contains("CN=admin") == true)
        try await admin.shutdown()

        let stranger = try Self.client(trusting: certificates, certificate: "admin", from: rogue)
        await #expect(throws: (any Error).self) { _ = try await HTTP.request(kernel.url + "/v1/system/status", client: stranger) }
        try await stranger.shutdown()
        await kernel.stop()
    }

    @Test("the gate covers hub, admin, audit, and system routes only after setup, also with odd spellings")
    func guardedPaths() {
        let before = AdminCertificateMiddleware(state: SystemState(isInitialized: false), clientCAPaths: [])
        let after = AdminCertificateMiddleware(state: SystemState(isInitialized: true), clientCAPaths: [])
        for path in ["/v1/hub/portals", "/v1/admin/login", "/v1/audit", "/v1/audit/checkpoints", "//v1/hub/portals", "/v1/%68ub/portals", "/v1/admin"] {
            #expect(before.requiresCertificate(path: path), "\(path)")
            #expect(after.requiresCertificate(path: path), "\(path)")
        }
        for path in ["/v1/system/status", "/v1/system/setup", "/v1/system/license"] {
            #expect(!before.requiresCertificate(path: path), "\(path)")
            #expect(after.requiresCertificate(path: path), "\(path)")
        }
        for path in ["/p/demo/echo-c/echo", "/metrics", "/", "/v1/hubx", "/v2/hub/portals"] {
            #expect(!after.requiresCertificate(path: path), "\(path)")
        }
    }

    @Test("client_certificates and [admin] are validated with file, line and key")
    func configValidation() throws {
        let loader = ConfigLoader(environment: [:])
        let listener = "[[listeners]]\ntls_certificate = \"s.pem\"\ntls_key = \"s.key\"\nclient_ca = \"ca.pem\"\n"
        let optional = try loader.parse(listener + "client_certificates = \"optional\"\n[admin]\nrequire_client_certificate = true\n", path: "/etc/mb/plugins.toml")
        #expect(optional.listeners[0].clientCertificates == .optional)
        #expect(optional.listeners[0].clientCAPath == "/etc/mb/ca.pem")
        #expect(optional.adminRequiresClientCertificate)
        let defaults = try loader.parse(listener, path: "/etc/mb/plugins.toml")
        #expect(defaults.listeners[0].clientCertificates == .required)
        #expect(!defaults.adminRequiresClientCertificate)

        let bad = #expect(throws: ConfigError.self) { try loader.parse(listener + "client_certificates = \"sometimes\"\n", path: "/p.toml") }
        #expect(bad?.line == 5)
        #expect(bad?.key == "listeners.0.client_certificates")
        #expect(bad?.message.contains("required, optional") == true)

        let withoutCA = #expect(throws: ConfigError.self) {
            try loader.parse("[[listeners]]\nport = 1\nclient_certificates = \"optional\"\n", path: "/p.toml")
        }
        #expect(withoutCA?.line == 3)
        #expect(withoutCA?.message.contains("needs client_ca") == true)

        let noMTLS = #expect(throws: ConfigError.self) {
            try loader.parse("[[listeners]]\nport = 1\n\n[admin]\nrequire_client_certificate = true\n", path: "/p.toml")
        }
        #expect(noMTLS?.line == 5)
        #expect(noMTLS?.key == "admin.require_client_certificate")
        #expect(noMTLS?.message.contains("client_ca") == true)

        let unknown = #expect(throws: ConfigError.self) { try loader.parse("[admin]\nrequire_cert = true\n", path: "/p.toml") }
        #expect(unknown?.key == "admin.require_cert")
        let wrongType = #expect(throws: ConfigError.self) { try loader.parse("[admin]\nrequire_client_certificate = \"yes\"\n", path: "/p.toml") }
        #expect(wrongType?.message.contains("expected true or false") == true)
    }
}
