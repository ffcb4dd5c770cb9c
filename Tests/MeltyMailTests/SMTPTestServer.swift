import Foundation
import XCTest

/// The aiosmtpd test server (Tests/Support/smtp_server.py) as a real process in a fresh
/// folder, with its maildir; ``stop()`` terminates it and waits (also at deinit).
final class SMTPTestServer {
    /// The folder holding Package.swift.
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        return "/"
    }()

    static var python: String { repositoryRoot + "/.venv/bin/python" }

    let folder: String
    let maildir: String
    let port: Int
    private let process = Process()

    /// Starts the server with `arguments` (after `--port 0 --maildir …`). Throws, with the
    /// server's stderr, when it does not print `READY <port>`.
    init(folder: String, arguments: [String] = []) throws {
        self.folder = folder
        maildir = folder + "/mail-\(UUID().uuidString.prefix(8))"
        guard FileManager.default.isExecutableFile(atPath: Self.python) else {
            throw TestFailure("\(Self.python) is missing: run scripts/setup.sh --test")
        }
        let stdout = Pipe()
        let stderrPath = maildir + ".stderr"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = [Self.repositoryRoot + "/Tests/Support/smtp_server.py", "--port", "0", "--maildir", maildir] + arguments
        process.standardOutput = stdout
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        try process.run()
        // One line: "READY <port>" (or end of file when the server failed).
        var line: [UInt8] = []
        let handle = stdout.fileHandleForReading
        var readable = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
        while line.count < 200 {
            // At most 30 s for each byte, so a server that hangs before READY fails the test.
            guard poll(&readable, 1, 30_000) > 0 else { break }
            let byte = handle.readData(ofLength: 1)
            guard let first = byte.first else { break }
            if first == 10 { break }
            line.append(first)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("READY "), let port = Int(text.dropFirst(6)) else {
            Self.end(process)
            let stderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
            throw TestFailure("the SMTP test server did not start (run scripts/setup.sh --test if aiosmtpd is missing): \(text) \(stderr)")
        }
        self.port = port
    }

    /// Terminates the server (SIGTERM, SIGKILL after 10 s) and waits for it.
    func stop() {
        Self.end(process)
    }

    private static func end(_ process: Process) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }

    /// The envelope and raw DATA of message number `sequence`, waiting up to 10 s for them.
    func message(_ sequence: Int) throws -> (envelope: [String: Any], raw: String) {
        let json = maildir + "/\(sequence).json"
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: json) && Date() < deadline { usleep(20_000) }
        let envelopeData = try Data(contentsOf: URL(fileURLWithPath: json))
        let envelope = try JSONSerialization.jsonObject(with: envelopeData) as? [String: Any] ?? [:]
        let raw = try String(contentsOfFile: maildir + "/\(sequence).eml", encoding: .utf8)
        return (envelope, raw)
    }

    /// How many messages were stored.
    var storedCount: Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: maildir)) ?? []).filter { $0.hasSuffix(".json") }.count
    }
}

/// A test setup failure with a message.
struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A temporary folder with a throwaway self-signed certificate for localhost and
/// 127.0.0.1 (made with the openssl CLI), removed at deinit.
final class TemporaryFolder {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "meltymail-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Makes `<name>.pem` and `<name>-key.pem` (P-256, one day) for `subjectAltName`;
    /// returns their paths.
    func makeCertificate(name: String = "cert", subjectAltName: String = "DNS:localhost,IP:127.0.0.1") throws -> (certificate: String, key: String) {
        let certificate = path + "/\(name).pem"
        let key = path + "/\(name)-key.pem"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=\(subjectAltName)", "-days", "1", "-keyout", key, "-out", certificate,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestFailure("openssl req failed with status \(process.terminationStatus)") }
        return (certificate, key)
    }
}
