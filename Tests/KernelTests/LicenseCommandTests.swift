import Foundation
import MeltyEd25519
import MeltyLicense
import Testing

@testable import Kernel

/// `meltybase license` and the helper that runs the built binary (also used by `certs init`).
@Suite("meltybase license: keygen, issue and verify through the binary", .timeLimit(.minutes(3)))
struct LicenseCommandTests {
    /// RFC 8032 test vector 1's public key, the key of the worked example in docs/licenses.md.
    static let examplePublicKey = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

    @Test("the kernel's verifier uses [license] public_key")
    func verifierFromConfig() throws {
        var pair = Ed25519.generate()
        defer { Ed25519.wipe(&pair.secretKey) }
        let now = Date()
        let license = try License(ownerEmail: "ops@acme.example", tier: .commercial, seats: 20, issuedAt: now)
        var config = KernelConfig.defaults(directory: "/tmp")
        config.licensePublicKey = ByteEncoding.hex(pair.publicKey)
        #expect(try LicenseVerifier(config: config).verify(try LicenseIssuer.sign(license, secretKey: pair.secretKey), now: now) == license)
        config.licensePublicKey = nil
        #expect(throws: LicenseError.noPublicKey) { try LicenseVerifier(config: config) }
    }

    static func run(
        _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:], directory: String? = nil
    ) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestPlugins.meltybaseBinary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MELTYBASE_") }.merging(environment) { $1 }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        // Standard input comes from a file: writing to a pipe the child has stopped reading
        // could raise SIGPIPE in the test process.
        let inputPath = FileManager.default.temporaryDirectory.appendingPathComponent("mb-license-stdin-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: inputPath, contents: Data((stdin ?? "").utf8))
        defer { try? FileManager.default.removeItem(atPath: inputPath) }
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle(forReadingAtPath: inputPath)
        try process.run()
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    @Test("meltybase license keygen, issue and verify, with exit codes and file modes")
    func commandLine() throws {
        let directory = try makeTemporaryDirectory("license")
        let keys = directory + "/keys"
        let keygen = try Self.run(["license", "keygen", "--out", keys])
        #expect(keygen.status == 0, "\(keygen)")
        #expect(AdminCertificateTests.mode(keys + "/license-signing.key") == 0o600)
        #expect(AdminCertificateTests.mode(keys + "/license-signing.pub") == 0o644)
        let publicKey = try String(contentsOfFile: keys + "/license-signing.pub", encoding: .utf8).trimmingCharacters(in: .newlines)
        #expect(keygen.stdout.contains("public_key = \"\(publicKey)\""))
        let again = try Self.run(["license", "keygen", "--out", keys])
        #expect(again.status == 1 && again.stderr.contains("Error: ") && again.stderr.contains("already exists"), "\(again)")

        let issue = try Self.run([
            "license", "issue", "--key", keys + "/license-signing.key", "--owner", "ops@acme.example",
            "--name", "Acme GmbH", "--tier", "commercial", "--seats", "20", "--expires", "2099-12-31",
        ])
        #expect(issue.status == 0, "\(issue)")
        let license = issue.stdout.trimmingCharacters(in: .newlines)
        #expect(license.hasPrefix("MB1.") && !license.contains("\n") && issue.stdout == license + "\n")

        let verify = try Self.run(["license", "verify", "--public-key", publicKey, license])
        #expect(verify.status == 0, "\(verify)")
        for line in ["license valid", "ops@acme.example", "Acme GmbH", "commercial", "20", "2099-12-31T23:59:59Z"] {
            #expect(verify.stdout.contains(line), "\(line) in \(verify.stdout)")
        }
        let fromStdin = try Self.run(["license", "verify", "--public-key", publicKey, "-"], stdin: license + "\n")
        #expect(fromStdin.status == 0, "\(fromStdin)")
        let fromEnvironment = try Self.run(["license", "verify", license], environment: ["MELTYBASE_LICENSE_PUBLIC_KEY": publicKey], directory: directory)
        #expect(fromEnvironment.status == 0, "\(fromEnvironment)")
        let config = directory + "/plugins.toml"
        try "[license]\npublic_key = \"\(publicKey)\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let fromConfig = try Self.run(["license", "verify", "--config", config, license])
        #expect(fromConfig.status == 0, "\(fromConfig)")

        let tampered = try Self.run(["license", "verify", "--public-key", publicKey, license.replacingOccurrences(of: "MB1.eyJ", with: "MB1.eyK")])
        #expect(tampered.status == 1 && tampered.stderr.contains("Error: license refused: "), "\(tampered)")
        let wrongKey = try Self.run(["license", "verify", "--public-key", Self.examplePublicKey, license])
        #expect(wrongKey.status == 1 && wrongKey.stderr.contains("license signature does not verify with the configured public key"), "\(wrongKey)")
        let noKey = try Self.run(["license", "verify", license], directory: keys)
        #expect(noKey.status == 1 && noKey.stderr.contains("no license public key is configured"), "\(noKey)")
        let garbage = try Self.run(["license", "verify", "--public-key", publicKey, "-"], stdin: String(repeating: "x", count: 100_000))
        #expect(garbage.status == 1 && garbage.stderr.contains("longer than 8 KiB"), "\(garbage)")

        chmod(keys + "/license-signing.key", 0o644)
        let loose = try Self.run(["license", "issue", "--key", keys + "/license-signing.key", "--owner", "a@b.cc", "--tier", "indie", "--seats", "1"])
        #expect(loose.status == 1 && loose.stderr.contains("has mode 0644") && loose.stdout.isEmpty, "\(loose)")
    }
}
