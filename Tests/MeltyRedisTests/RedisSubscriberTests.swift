import Foundation
import Synchronization
import Testing

@testable import MeltyRedis

/// The pub/sub subscriber against a real redis-server: binary payloads, changing
/// subscriptions while it waits, a large message, reconnecting after the connection is
/// killed, and a prompt close.
@Suite("Redis subscriber: binary messages, live subscription changes, reconnect, close", .serialized, .timeLimit(.minutes(3)))
struct RedisSubscriberTests {
    /// What a subscriber's handlers received, in order.
    final class Received: Sendable {
        private let state = Mutex<(messages: [(channel: String, payload: [UInt8])], states: [Bool])>(([], []))

        var messages: [(channel: String, payload: [UInt8])] { state.withLock { $0.messages } }
        var states: [Bool] { state.withLock { $0.states } }

        func message(_ channel: String, _ payload: [UInt8]) { state.withLock { $0.messages.append((channel, payload)) } }
        func connected(_ value: Bool) { state.withLock { $0.states.append(value) } }

        /// Waits up to 20 s for `condition`; false when it never held.
        func wait(_ condition: (Received) -> Bool) async -> Bool {
            let deadline = Date().addingTimeInterval(20)
            while !condition(self) {
                if Date() > deadline { return false }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return true
        }
    }

    /// A subscriber on `server` recording into `received`, subscribed to `channels` and connected.
    func subscriber(_ server: RedisClientTests.Server, _ received: Received, channels: [String]) async throws -> RedisSubscriber {
        let subscriber = try RedisSubscriber(
            url: "unix://\(server.socket)", name: "test", onMessage: { received.message($0, $1) }, onState: { received.connected($0) })
        subscriber.subscribe(channels)
        #expect(await received.wait { $0.states == [true] })
        return subscriber
    }

    /// Publishes until `receivers` subscribers get it (a SUBSCRIBE or UNSUBSCRIBE sent a
    /// moment ago takes effect soon, not at once); returns the last receiver count.
    func publish(_ client: RedisClient, _ channel: String, _ payload: [UInt8], until receivers: Int) async throws -> Int {
        let deadline = Date().addingTimeInterval(20)
        while true {
            let count = try await client.publish(channel: channel, payload: payload)
            if count == receivers || Date() > deadline { return count }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test("a published payload with NUL and high bytes arrives byte for byte; PUBLISH counts the receiver")
    func binaryPayload() async throws {
        let server = try RedisClientTests.Server()
        let client = try RedisClient(url: "unix://\(server.socket)")
        let received = Received()
        let subscriber = try await subscriber(server, received, channels: ["room:1"])
        defer { subscriber.close() }
        let payload: [UInt8] = [0, 1, 2, 0, 0xFF, 0x80, 0x0A, 0x0D, 0] + Array("after NUL".utf8)
        #expect(try await client.publish(channel: "room:1", payload: payload) == 1)
        #expect(try await client.publish(channel: "room:2", payload: [1]) == 0)
        #expect(await received.wait { $0.messages.count == 1 })
        #expect(received.messages.first?.channel == "room:1")
        #expect(received.messages.first?.payload == payload)
    }

    @Test("subscribe and unsubscribe while the thread waits take effect")
    func changeWhileRunning() async throws {
        let server = try RedisClientTests.Server()
        let client = try RedisClient(url: "unix://\(server.socket)")
        let received = Received()
        let subscriber = try await subscriber(server, received, channels: ["a"])
        defer { subscriber.close() }
        subscriber.subscribe(["b", "c"])
        #expect(try await publish(client, "b", Array("to b".utf8), until: 1) == 1)
        #expect(try await client.publish(channel: "c", payload: Array("to c".utf8)) == 1)
        subscriber.unsubscribe(["a", "c"])
        #expect(try await publish(client, "a", Array("to a".utf8), until: 0) == 0)
        #expect(try await client.publish(channel: "c", payload: [0]) == 0)
        #expect(try await client.publish(channel: "b", payload: Array("still b".utf8)) == 1)
        #expect(await received.wait { $0.messages.contains { $0.payload == Array("still b".utf8) } })
        #expect(received.messages.filter { $0.channel == "b" }.map { String(decoding: $0.payload, as: UTF8.self) }.last == "still b")
        #expect(received.messages.contains { $0.channel == "c" && $0.payload == Array("to c".utf8) })
        #expect(received.states == [true])
    }

    @Test("a 1 MiB message arrives whole")
    func largeMessage() async throws {
        let server = try RedisClientTests.Server()
        let client = try RedisClient(url: "unix://\(server.socket)", timeoutMilliseconds: 5000)
        let received = Received()
        let subscriber = try await subscriber(server, received, channels: ["big"])
        defer { subscriber.close() }
        var generator = SystemRandomNumberGenerator()
        let payload = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        #expect(try await client.publish(channel: "big", payload: payload) == 1)
        #expect(await received.wait { $0.messages.count == 1 })
        #expect(received.messages.first?.payload.count == 1 << 20)
        #expect(received.messages.first?.payload == payload)
    }

    @Test("after CLIENT KILL TYPE pubsub it reports the loss, reconnects, subscribes every channel again and delivers later messages")
    func reconnectAfterKill() async throws {
        let server = try RedisClientTests.Server()
        let client = try RedisClient(url: "unix://\(server.socket)")
        let received = Received()
        let subscriber = try await subscriber(server, received, channels: ["x", "y"])
        defer { subscriber.close() }
        subscriber.subscribe(["z"])
        #expect(try await publish(client, "z", [1], until: 1) == 1)
        #expect(try await client.commandSync(["CLIENT", "KILL", "TYPE", "pubsub"]) == .integer(1))
        #expect(await received.wait { $0.states == [true, false, true] })
        // Subscribed again before reporting connected: every channel, the one added later too.
        for channel in ["x", "y", "z"] {
            #expect(try await client.publish(channel: channel, payload: Array("after \(channel)".utf8)) == 1)
        }
        #expect(await received.wait { $0.messages.filter { String(decoding: $0.payload, as: UTF8.self).hasPrefix("after") }.count == 3 })
    }

    @Test("close() returns promptly, connected or while it backs off from a dead server")
    func closePromptly() async throws {
        let server = try RedisClientTests.Server()
        let received = Received()
        let connected = try await subscriber(server, received, channels: ["a"])
        var started = Date()
        connected.close()
        connected.close()
        #expect(Date().timeIntervalSince(started) < 1)

        let backingOff = Received()
        let other = try await subscriber(server, backingOff, channels: ["a"])
        server.kill()
        #expect(await backingOff.wait { $0.states == [true, false] })
        try await Task.sleep(for: .milliseconds(300))
        started = Date()
        other.close()
        #expect(Date().timeIntervalSince(started) < 1)
    }
}
