import AsyncHTTPClient
import Foundation
import Logging
import MeltyEd25519
import MeltyLicense
import NIOCore
import Testing

@testable import Kernel

/// The Studio's kernel side: static files with cache and security headers, the `/`
/// redirect, and the license check routes the setup wizard uses.
@Suite("Studio: assets, headers, license checks", .serialized, .timeLimit(.minutes(3)))
struct StudioTests {
    /// A client that reports redirects instead of following them.
    static let noRedirects = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))

    @Test("/ redirects to /dashboard; the page and its versioned assets carry CSP, nosniff and cache headers")
    func assetsAndHeaders() async throws {
        let kernel = try await TestKernel.start("")
        defer { Task { await kernel.stop() } }
        let root = try await HTTP.request(kernel.url + "/", client: Self.noRedirects)
        #expect(root.status == 302)
        #expect(root.headers.first(name: "location") == "/dashboard")

        for path in ["/dashboard", "/dashboard/", "/dashboard/portals", "/dashboard/setup/license"] {
            let page = try await kernel.request(path)
            #expect(page.status == 200, "\(path)")
            #expect(page.headers.first(name: "content-type") == "text/html; charset=utf-8")
            #expect(page.headers.first(name: "cache-control") == "no-cache")
            let policy = try #require(page.headers.first(name: "content-security-policy"))
            #expect(policy.contains("default-src 'self'") && policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"))
            #expect(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"))
            #expect(page.headers.first(name: "x-content-type-options") == "nosniff")
            #expect(page.headers.first(name: "x-frame-options") == "DENY")
            #expect(page.body.contains("<script type=\"module\""))
            #expect(!page.body.contains("{{ASSET_BASE}}"))
        }
        let page = try await kernel.request("/dashboard")
        let base = try #require(page.body.firstMatch(of: #/\/dashboard\/assets\/([0-9a-f]{16})\/js\/app\.js/#))
        let script = try await kernel.request(String(base.0))
        #expect(script.status == 200)
        #expect(script.headers.first(name: "content-type") == "text/javascript; charset=utf-8")
        #expect(script.headers.first(name: "cache-control") == "public, max-age=31536000, immutable")
        #expect(script.headers.first(name: "content-security-policy") != nil)
        let css = try await kernel.request("/dashboard/assets/\(base.1)/css/studio.css")
        #expect(css.status == 200 && css.headers.first(name: "content-type") == "text/css; charset=utf-8")

        for missing in [
            "/dashboard/assets/0123456789abcdef/js/app.js", "/dashboard/assets/\(base.1)/js/nope.js",
            "/dashboard/assets/\(base.1)/../index.html", "/dashboard/assets/x",
        ] {
            let answer = try await kernel.request(missing)
            #expect(answer.status == 404, "\(missing)")
            #expect(HTTP.json(answer.body)["code"] as? String == "asset_not_found", "\(missing): \(answer.body)")
        }
        let plugins = try await kernel.request("/v1/hub/plugins")
        #expect(plugins.status == 401 && HTTP.json(plugins.body)["code"] as? String == "unauthenticated")
    }

    @Test("the asset set's version follows its contents; content types by extension")
    func assetVersion() throws {
        let directory = try makeTemporaryDirectory("studio-assets")
        try FileManager.default.createDirectory(atPath: directory + "/js", withIntermediateDirectories: true)
        try Data("<script src=\"{{ASSET_BASE}}/js/a.js\"></script>".utf8).write(to: URL(fileURLWithPath: directory + "/index.html"))
        try Data("export {}".utf8).write(to: URL(fileURLWithPath: directory + "/js/a.js"))
        let first = try #require(StudioAssets(directory: directory))
        #expect(first.version.count == 16)
        #expect(String(buffer: first.index) == "<script src=\"/dashboard/assets/\(first.version)/js/a.js\"></script>")
        #expect(first.files["js/a.js"]?.contentType == "text/javascript; charset=utf-8")
        #expect(first.files["index.html"] == nil)
        try Data("export const changed = 1".utf8).write(to: URL(fileURLWithPath: directory + "/js/a.js"))
        let second = try #require(StudioAssets(directory: directory))
        #expect(second.version != first.version)
        #expect(StudioAssets(directory: directory + "/js") == nil, "no index.html, no Studio")
        #expect(StudioAssets.contentType(for: "x.svg") == "image/svg+xml")
        #expect(StudioAssets.contentType(for: "x.bin") == "application/octet-stream")
    }

    @Test("the kernel build ships the Studio: index.html and every module it imports")
    func shippedAssets() throws {
        let assets = try #require(StudioAssets.candidateDirectories().lazy.compactMap { StudioAssets(directory: $0) }.first)
        for file in ["css/studio.css", "js/app.js", "js/api.js", "js/wizard.js", "js/pages/index.js", "favicon.svg"] {
            #expect(assets.files[file] != nil, "\(file)")
        }
        // Every relative import resolves to a shipped file.
        for (path, asset) in assets.files where path.hasSuffix(".js") {
            let source = String(buffer: asset.bytes)
            for match in source.matches(of: #/from '(\.{1,2}\/[^']+)'/#) {
                let resolved = URL(fileURLWithPath: "/" + path).deletingLastPathComponent().appendingPathComponent(String(match.1)).standardized.path
                #expect(assets.files[String(resolved.dropFirst())] != nil, "\(path) imports \(match.1)")
            }
        }
    }

    @Test("license verify: checks without applying; reasons for bad licenses; 4xx JSON for bad input; admins only after setup")
    func verifyRoute() async throws {
        let vendor = SetupLifecycleTests.Vendor(keys: Ed25519.generate())
        let kernel = try await SetupLifecycleTests.start(vendor)
        defer { Task { await kernel.stop() } }
        let valid = try vendor.license(tier: .commercial, seats: 7)
        let body = { (key: String) in String(decoding: try! JSONSerialization.data(withJSONObject: ["license_key": key]), as: UTF8.self) }

        let ok = try await kernel.request("/v1/system/license/verify", method: .POST, body: body(valid))
        #expect(ok.status == 200, "\(ok.body)")
        let license = try #require(HTTP.json(ok.body)["license"] as? [String: Any])
        #expect(license["tier"] as? String == "commercial" && license["seats"] as? Int == 7 && license["owner"] as? String == "owner@example.com")
        #expect(license["evaluation"] as? Bool == false)
        #expect(HTTP.json(try await kernel.request("/v1/system/status").body)["is_initialized"] as? Bool == false, "verify does not apply")

        let foreign = try SetupLifecycleTests.Vendor(keys: Ed25519.generate()).license()
        let expired = try vendor.license(expires: Date().addingTimeInterval(-60), issued: Date().addingTimeInterval(-86400))
        for (key, reason) in [(foreign, "bad_signature"), (expired, "expired"), ("MB1.abc", "malformed")] {
            let refused = try await kernel.request("/v1/system/license/verify", method: .POST, body: body(key))
            let json = HTTP.json(refused.body)
            #expect(refused.status == 400 && json["code"] as? String == "license_invalid" && json["reason"] as? String == reason, "\(refused.body)")
            #expect(json["field"] as? String == "license_key")
        }
        for (bad, code) in [("{no", "invalid_json"), ("[]", "invalid_json"), ("{}", "invalid_field"), ("{\"license_key\": 5}", "invalid_field")] {
            let refused = try await kernel.request("/v1/system/license/verify", method: .POST, body: bad)
            #expect(refused.status == 400 && HTTP.json(refused.body)["code"] as? String == code, "\(bad): \(refused.body)")
        }
        // A vendor key is configured: no evaluation licenses, and no key file made.
        let offer = HTTP.json(try await kernel.request("/v1/system/license/evaluation").body)
        #expect(offer["available"] as? Bool == false)
        let refused = try await kernel.request("/v1/system/license/evaluation", method: .POST)
        #expect(refused.status == 404 && HTTP.json(refused.body)["code"] as? String == "evaluation_unavailable")
        #expect(!FileManager.default.fileExists(atPath: kernel.kernel.config.dataDirectory + "/" + EvaluationLicense.secretKeyFileName))

        let setup = try await kernel.request("/v1/system/setup", method: .POST, body: SetupLifecycleTests.setupBody(valid))
        #expect(setup.status == 201, "\(setup.body)")
        let after = try await kernel.request("/v1/system/license/verify", method: .POST, body: body(valid))
        #expect(after.status == 401, "after setup only admins may check licenses")
    }

    @Test("without a vendor key: an evaluation key (0600) signs an indie license for loopback clients until setup")
    func evaluationLicense() async throws {
        let kernel = try await TestKernel.start("")
        defer { Task { await kernel.stop() } }
        let keyPath = kernel.kernel.config.dataDirectory + "/" + EvaluationLicense.secretKeyFileName
        var status = stat()
        #expect(stat(keyPath, &status) == 0 && status.st_mode & 0o777 == 0o600)
        let keyText = try String(contentsOfFile: keyPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(keyText.count == 128)
        #expect(!kernel.log.text.contains(keyText), "the key is never logged")
        #expect(kernel.log.text.contains("evaluation licenses"))

        let offer = HTTP.json(try await kernel.request("/v1/system/license/evaluation").body)
        #expect(offer["available"] as? Bool == true && offer["tier"] as? String == "indie" && offer["seats"] as? Int == EvaluationLicense.seats)
        let issued = try await kernel.request("/v1/system/license/evaluation", method: .POST)
        #expect(issued.status == 201, "\(issued.body)")
        let json = HTTP.json(issued.body)
        let key = try #require(json["license_key"] as? String)
        let license = try #require(json["license"] as? [String: Any])
        #expect(license["tier"] as? String == "indie" && license["evaluation"] as? Bool == true && license["expires_at"] is String)

        let setup = try await kernel.request("/v1/system/setup", method: .POST, body: SetupLifecycleTests.setupBody(key))
        #expect(setup.status == 201, "\(setup.body)")
        #expect(HTTP.json(setup.body)["seats"] as? Int == EvaluationLicense.seats)
        let closed = try await kernel.request("/v1/system/license/evaluation", method: .POST)
        #expect(closed.status == 410 && HTTP.json(closed.body)["code"] as? String == "setup_closed")
        #expect(try await kernel.request("/v1/system/license/evaluation").status == 410)
    }

    @Test("a configured vendor key wins over an evaluation key left in the data directory")
    func vendorKeyWins() throws {
        let directory = try makeTemporaryDirectory("studio-eval")
        var config = KernelConfig.defaults(directory: directory)
        let logger = Logger(label: "test")
        let evaluation = try #require(try EvaluationLicense.prepare(config: config, initialized: false, logger: logger))
        let (key, _) = try evaluation.issue()
        config.licensePublicKey = ByteEncoding.hex(Ed25519.generate().publicKey)
        #expect(try EvaluationLicense.prepare(config: config, initialized: false, logger: logger) == nil)
        #expect(throws: LicenseError.badSignature) { try LicenseVerifier(config: config).verify(key) }
        // After setup the key is loaded only if it exists, never created.
        config.licensePublicKey = nil
        #expect(try EvaluationLicense.prepare(config: config, initialized: true, logger: logger)?.publicKeyHex == evaluation.publicKeyHex)
        config.dataDirectory = directory + "/other"
        #expect(try EvaluationLicense.prepare(config: config, initialized: true, logger: logger) == nil)
    }
}
