import Foundation
import MeltyJSON
import Synchronization
import Testing

@testable import RealtimeCore

@Suite struct PhoenixFrameTests {
    @Test func decodesVersion1ObjectsWithStringOrNumberRefs() throws {
        let message = try PhoenixFrame.decode(
            text: Array(#"{"topic":"realtime:a","event":"phx_join","payload":{"x":1},"ref":7,"join_ref":"3"}"#.utf8), version: .v1)
        #expect(message.topic == "realtime:a" && message.event == "phx_join" && message.ref == "7" && message.joinRef == "3")
        #expect(message.payload == Array(#"{"x":1}"#.utf8))
    }

    @Test func decodesVersion2ArraysAndKeepsPayloadBytes() throws {
        let message = try PhoenixFrame.decode(text: Array(#"[null,"2","realtime:b","broadcast",{"n":12345678901234567890}]"#.utf8), version: .v2)
        #expect(message.joinRef == nil && message.ref == "2")
        #expect(String(decoding: message.payload, as: UTF8.self) == #"{"n":12345678901234567890}"#)
    }

    @Test(arguments: [
        "", "null", "[]", "{}", #"{"topic":"x"}"#, #"{"topic":"","event":"e"}"#, #"{"topic":"t","event":"e","payload":[1]}"#,
        #"{"topic":"t\u0000","event":"e"}"#, #"{"topic":"t","event":"e","ref":{"a":1}}"#, String(repeating: "[", count: 5000),
        #"{"topic":"t","event":"e"} trailing"#, "{\"topic\":\"\u{1}\",\"event\":\"e\"}",
    ])
    func refusesMalformedVersion1Messages(_ text: String) {
        #expect(throws: ProtocolError.self) { try PhoenixFrame.decode(text: Array(text.utf8), version: .v1) }
    }

    @Test func refusesVersion2ArraysOfTheWrongLength() {
        #expect(throws: ProtocolError.self) { try PhoenixFrame.decode(text: Array(#"[null,"1","t","e"]"#.utf8), version: .v2) }
    }

    @Test func binaryPushRoundTripsThroughTheServerBroadcastFrame() throws {
        let push: [UInt8] = [3, 1, 1, 10, 4, 1] + Array("1".utf8) + Array("2".utf8) + Array("realtime:r".utf8) + Array("move".utf8) + Array(#"{"x":1}"#.utf8)
        let message = try PhoenixFrame.decode(binary: push)
        let body = try #require(message.binaryBroadcast)
        #expect(message.topic == "realtime:r" && body.event == "move" && body.isJSON && body.payload == Array(#"{"x":1}"#.utf8))
        let frame = try #require(PhoenixFrame.binaryBroadcast(topic: message.topic, body: body))
        #expect(Array(frame.prefix(5)) == [4, 10, 4, 0, 1])
        #expect(Array(frame.suffix(7)) == Array(#"{"x":1}"#.utf8))
    }

    @Test(arguments: [[UInt8](), [3], [3, 9, 0, 0, 0, 1], [4, 0, 0, 0, 0, 0], [3, 0, 0, 1, 0, 2, 65], [3, 0, 0, 1, 0, 1, 65, 123]])
    func refusesBadBinaryFrames(_ frame: [UInt8]) {
        #expect(throws: ProtocolError.self) { try PhoenixFrame.decode(binary: frame) }
    }

    @Test func encodesBothVersions() throws {
        let v1 = PhoenixFrame.encode(version: .v1, joinRef: nil, ref: "1", topic: "realtime:\"q\"", event: "phx_reply", payload: Array("{}".utf8))
        let object = try #require(JSONValue.object(json: v1))
        #expect(object["topic"] == .string("realtime:\"q\"") && object["ref"] == .string("1") && object["join_ref"] == .null)
        let v2 = PhoenixFrame.encode(version: .v2, joinRef: "4", ref: nil, topic: "t", event: "e", payload: Array("{}".utf8))
        #expect(String(decoding: v2, as: UTF8.self) == #"["4",null,"t","e",{}]"#)
    }
}

@Suite struct JoinRequestTests {
    @Test func readsEveryOption() throws {
        let request = try JoinRequest(
            payload: Array(
                #"{"config":{"broadcast":{"ack":true,"self":true,"replay":{"since":1700000000000,"limit":10}},"presence":{"key":"ada"},"private":true,"postgres_changes":[{"event":"INSERT","schema":"public","table":"t","filter":"id=eq.1"},{"event":"*"}]},"access_token":"tok"}"#
                    .utf8))
        #expect(request.acknowledge && request.receiveOwn && request.isPrivate && request.presenceEnabled && request.presenceKey == "ada")
        #expect(request.replaySince == 1_700_000_000_000 && request.replayLimit == 10 && request.accessToken == "tok")
        #expect(request.changes.count == 2 && request.changes[0].filter == "id=eq.1" && request.changes[1].schema == nil)
    }

    @Test(arguments: [
        #"{"config":5}"#, #"{"config":{"broadcast":{"ack":"yes"}}}"#, #"{"config":{"broadcast":{"replay":{"since":1,"limit":26}}}}"#,
        #"{"config":{"broadcast":{"replay":{"since":1e300}}}}"#, #"{"config":{"postgres_changes":[{"event":"TRUNCATE"}]}}"#,
        #"{"config":{"postgres_changes":{}}}"#, #"{"access_token":5}"#, #"{"config":{"presence":{"key":7}}}"#,
    ])
    func refusesBadOptionsWithAMessage(_ payload: String) {
        #expect(throws: ProtocolError.self) { try JoinRequest(payload: Array(payload.utf8)) }
    }

    @Test func refusesTooManyBindings() {
        let entries = Array(repeating: #"{"event":"*"}"#, count: JoinRequest.maxChangeBindings + 1).joined(separator: ",")
        #expect(throws: ProtocolError.self) { try JoinRequest(payload: Array(#"{"config":{"postgres_changes":[\#(entries)]}}"#.utf8)) }
    }
}

/// Records what the hub sends.
final class RecordingSender: FrameSender {
    let sent = Mutex<[(OutboundFrame, [UInt64])]>([])
    func send(_ frame: OutboundFrame, to connections: [UInt64]) { sent.withLock { $0.append((frame, connections)) } }
    func close(_ connection: UInt64, code: UInt16, reason: String) {}
    func texts(to connection: UInt64) -> [String] {
        sent.withLock { list in
            list.compactMap { frame, ids in
                guard ids.contains(connection), case .text(let bytes) = frame else { return nil }
                return String(decoding: bytes, as: UTF8.self)
            }
        }
    }
}

@Suite struct ChannelHubTests {
    let caller = Caller(role: "anon", subject: nil, claimsJSON: Array(#"{"role":"anon"}"#.utf8), expiresAt: nil)

    func request(_ json: String) throws -> JoinRequest { try JoinRequest(payload: Array(json.utf8)) }

    @Test func broadcastSkipsTheSenderUnlessSelfAndEncodesOncePerVersion() throws {
        let sender = RecordingSender()
        let hub = ChannelHub(node: "n1", sender: sender)
        hub.open(1, version: .v1, caller: caller)
        hub.open(2, version: .v1, caller: caller)
        hub.open(3, version: .v2, caller: caller)
        for id: UInt64 in [1, 2, 3] { _ = hub.join(id, topic: "realtime:r", joinRef: "1", request: try request("{}"), caller: caller, canWrite: true) }
        let delivered = hub.broadcast(topic: "realtime:r", body: BroadcastBody(event: "e", payload: Array("{}".utf8), isJSON: true), from: 1)
        #expect(delivered == 2)
        let frames = sender.sent.withLock { $0 }
        #expect(frames.count == 2)
        #expect(frames.contains { $0.1 == [2] } && frames.contains { $0.1 == [3] })
    }

    @Test func presenceLeavesWhenTheConnectionCloses() throws {
        let sender = RecordingSender()
        let hub = ChannelHub(node: "n1", sender: sender)
        hub.open(1, version: .v1, caller: caller)
        hub.open(2, version: .v1, caller: caller)
        _ = hub.join(1, topic: "realtime:p", joinRef: "1", request: try request(#"{"config":{"presence":{"key":"ada"}}}"#), caller: caller, canWrite: true)
        _ = hub.join(2, topic: "realtime:p", joinRef: "1", request: try request("{}"), caller: caller, canWrite: true)
        let diff = try #require(hub.track(1, topic: "realtime:p", payload: Array(#"{"name":"Ada"}"#.utf8)))
        #expect(diff.joins.count == 1 && diff.joins[0].key == "ada")
        let closed = hub.close(1)
        #expect(closed.count == 1 && closed[0].leaves.count == 1)
        let last = try #require(sender.texts(to: 2).last)
        let payload = try #require(JSONValue.object(json: Array(last.utf8))?["payload"]?.objectValue)
        #expect(payload["leaves"]?.objectValue?["ada"] != nil)
    }

    @Test func remoteNodesPresenceIsDroppedWhenTheNodeDies() throws {
        let hub = ChannelHub(node: "n1", sender: RecordingSender())
        hub.open(1, version: .v1, caller: caller)
        _ = hub.join(1, topic: "realtime:p", joinRef: "1", request: try request("{}"), caller: caller, canWrite: true)
        let remote = PresenceTable.Entry(key: "bob", ref: "n2-1", meta: Array(#"{"phx_ref":"n2-1"}"#.utf8), node: "n2", connection: 9)
        hub.applyRemotePresence(topic: "realtime:p", joins: [remote], leaves: [])
        #expect(
            String(decoding: hub.join(1, topic: "realtime:p", joinRef: "2", request: try request("{}"), caller: caller, canWrite: true).presenceState, as: UTF8.self).contains(
                "bob"))
        hub.forgetNode("n2")
        #expect(
            !String(decoding: hub.join(1, topic: "realtime:p", joinRef: "3", request: try request("{}"), caller: caller, canWrite: true).presenceState, as: UTF8.self).contains(
                "bob"))
    }

    @Test func changeBindingsGetDistinctIdsAndGoAwayOnLeave() throws {
        let hub = ChannelHub(node: "n1", sender: RecordingSender())
        hub.open(1, version: .v1, caller: caller)
        let joined = hub.join(
            1, topic: "realtime:c", joinRef: "1", request: try request(#"{"config":{"postgres_changes":[{"event":"*","table":"a"},{"event":"INSERT","schema":"s","table":"b"}]}}"#),
            caller: caller, canWrite: true)
        #expect(joined.changeIDs.count == 2 && Set(joined.changeIDs).count == 2 && !joined.changeIDs.contains(0))
        #expect(hub.changeSubscriptions(schema: "public").count == 1 && hub.changeSubscriptions(schema: "s").count == 1)
        hub.leave(1, topic: "realtime:c")
        #expect(!hub.hasChangeSubscriptions)
    }

    @Test func expiredTokensAreFound() throws {
        let hub = ChannelHub(node: "n1", sender: RecordingSender())
        let soon = Caller(role: "authenticated", subject: "u", claimsJSON: Array("{}".utf8), expiresAt: 100)
        hub.open(1, version: .v1, caller: soon)
        _ = hub.join(1, topic: "realtime:x", joinRef: "1", request: try request("{}"), caller: soon, canWrite: true)
        #expect(hub.expired(at: 99).isEmpty)
        #expect(hub.expired(at: 100).first?.topics.first?.topic == "realtime:x")
    }
}

@Suite struct TokenBucketTests {
    @Test func refusesPastTheBurst() {
        let bucket = TokenBucket(rate: 1, burst: 3)
        #expect((0..<3).allSatisfy { _ in bucket.take() })
        #expect(!bucket.take())
    }
}
