import AsyncHTTPClient
import Foundation
import NIOSSL
import Testing

@testable import Kernel

@Suite("TLS and mTLS listeners", .serialized, .timeLimit(.minutes(3)))
struct TLSTests {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
    static func makeCertificates() throws -> String {
        let directory = try makeTemporaryDirectory("tls")
        let script = """
            set -e
            cd '\(directory)'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=Test CA' 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj '/CN=admin/O=MeltyBase' 2>/dev/null
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 2>/dev/null
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue.key -out rogue.pem -days 2 -subj '/CN=admin' 2>/dev/null
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestFailure("openssl failed") }
        return directory
    }

    func client(_ directory: String, certificate: String?) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(directory + "/ca.pem")
        if let certificate {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(directory + "/\(certificate).pem").map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: directory + "/\(certificate).key", format: .pem))
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
    }

    @Test("an mTLS listener accepts the right client certificate, hands its subject to plugins, and refuses others")
    func mutualTLS() async throws {
        let certificates = try Self.makeCertificates()
        let kernel = try await TestKernel.start(
            """
            [[listeners]]
            host = "127.0.0.1"
            port = 0
            tls_certificate = "\(certificates)/server.pem"
            tls_key = "\(certificates)/server.key"
            client_ca = "\(certificates)/ca.pem"
            """ + "\n" + examplePluginsTOML)
        #expect(kernel.url.hasPrefix("https://"))

        let good = try client(certificates, certificate: "client")
        let status = try await HTTP.request(kernel.url + "/v1/system/status", client: good)
        #expect(status.status == 200)
        let whoami = HTTP.json(try await HTTP.request(kernel.url + "/p/demo/echo-c/whoami", client: good).body)
        #expect((whoami["client_cert"] as? String)?.contains("CN=admin") == true)
        try await good.shutdown()

        let anonymous = try client(certificates, certificate: nil)
        await #expect(throws: (any Error).self) { _ = try await HTTP.request(kernel.url + "/v1/system/status", client: anonymous) }
        try await anonymous.shutdown()

        let rogue = try client(certificates, certificate: "rogue")
        await #expect(throws: (any Error).self) { _ = try await HTTP.request(kernel.url + "/v1/system/status", client: rogue) }
        try await rogue.shutdown()
        await kernel.stop()
    }

    @Test("a TLS listener without client_ca serves any client over HTTPS")
    func plainTLS() async throws {
        let certificates = try Self.makeCertificates()
        let kernel = try await TestKernel.start(
            """
            [[listeners]]
            port = 0
            tls_certificate = "\(certificates)/server.pem"
            tls_key = "\(certificates)/server.key"
            """)
        let anonymous = try client(certificates, certificate: nil)
        #expect(try await HTTP.request(kernel.url + "/v1/system/status", client: anonymous).status == 200)
        try await anonymous.shutdown()
        await kernel.stop()
    }
}
