import Foundation
import Testing

@testable import MeltyRedis

/// The hiredis client: URL forms, the password in a URL, readable errors after a server dies.
@Suite("Redis client: URLs, AUTH, and errors that read cleanly", .serialized, .timeLimit(.minutes(3)))
struct RedisClientTests {
    /// A redis-server on a unix socket in a fresh folder, optionally with a password.
    final class Server {
        let folder: String
        let socket: String
        let process = Process()

        init(password: String? = nil) throws {
            folder = NSTemporaryDirectory() + "mb-redis-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            socket = folder + "/r.sock"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
            process.arguments =
                ["--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no", "--dir", folder]
                + (password.map { ["--requirepass", $0] } ?? [])
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(20)
            while !FileManager.default.fileExists(atPath: socket) && Date() < deadline { usleep(20_000) }
        }

        func kill() {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        deinit {
            if process.isRunning { kill() }
            try? FileManager.default.removeItem(atPath: folder)
        }
    }

    @Test("after the server is killed, the error names Redis in readable text (the message once came out as garbage bytes)")
    func readableErrorAfterServerDeath() throws {
        let server = try Server()
        let client = try RedisClient(url: "unix://\(server.socket)")
        #expect(try client.commandSync(["PING"]) == .status("PONG"))
        server.kill()
        var message = ""
        do {
            _ = try client.commandSync(["PING"])
            Issue.record("a command on a dead server succeeded")
        } catch let error as RedisError {
            message = error.message
        }
        #expect(message.hasPrefix("redis at unix://"), "\(message)")
        #expect(!message.unicodeScalars.contains { $0.value < 0x20 || $0 == "\u{FFFD}" }, "\(message.debugDescription)")
    }

    @Test("a password in a TCP URL is sent with AUTH; a wrong one is refused by name without showing it")
    func passwordInURL() throws {
        let port = Int.random(in: 20_000...40_000)
        let password = "pw-\(UUID().uuidString.prefix(8))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        process.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "", "--appendonly", "no"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // SIGKILL: the test process blocks SIGTERM, and its children inherit the mask.
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let client = try RedisClient(url: "redis://:\(password)@127.0.0.1:\(port)/2")
        var reply: RedisReply?
        let deadline = Date().addingTimeInterval(20)
        while reply == nil && Date() < deadline {
            reply = try? client.commandSync(["SET", "k", "v"])
            if reply == nil { usleep(50_000) }
        }
        #expect(reply == .status("OK"))
        // SELECT 2 ran after AUTH: the key is in database 2.
        #expect(try client.commandSync(["GET", "k"]) == .string("v"))
        let wrong = try RedisClient(url: "redis://:not-it@127.0.0.1:\(port)")
        do {
            _ = try wrong.commandSync(["PING"])
            Issue.record("a wrong password was accepted")
        } catch let error as RedisError {
            #expect(error.message.contains("AUTH with the password in the URL failed"), "\(error.message)")
            #expect(!error.message.contains("not-it"), "\(error.message)")
        }
        let unauthenticated = try RedisClient(url: "redis://127.0.0.1:\(port)")
        #expect(try unauthenticated.commandSync(["PING"]) != .status("PONG"))
    }

    @Test("URL forms: rediss:// is refused with the reason, bad database numbers and ports are refused, passwords are redacted")
    func urlForms() {
        #expect(throws: RedisError.self) { try RedisClient(url: "rediss://:secret@127.0.0.1:6380") }
        do {
            _ = try RedisClient(url: "rediss://:secret@127.0.0.1:6380")
        } catch let error as RedisError {
            #expect(error.message.contains("TLS") && !error.message.contains("secret"), "\(error.message)")
        } catch {}
        #expect(throws: RedisError.self) { try RedisClient(url: "redis://127.0.0.1:6379/x") }
        #expect(throws: RedisError.self) { try RedisClient(url: "redis://127.0.0.1:99999") }
        #expect(throws: RedisError.self) { try RedisClient(url: "http://127.0.0.1:6379") }
        #expect(RedisClient.redacted("redis://user:hunter2@host:1/0") == "redis://user:***@host:1/0")
    }

    @Test("arguments holding NUL bytes are passed whole (binary-safe), not cut or over-read")
    func binarySafeArguments() throws {
        let server = try Server()
        let client = try RedisClient(url: "unix://\(server.socket)")
        _ = try client.commandSync(["SET", "nul", "a\u{0}b"])
        #expect(try client.commandSync(["STRLEN", "nul"]) == .integer(3))
    }
}
