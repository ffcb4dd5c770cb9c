import MeltyJSON

/// The protocol version a client asked for with `vsn`.
public enum ProtocolVersion: String, Sendable, Hashable, CaseIterable {
    /// JSON objects `{topic, event, payload, ref, join_ref}` (PyPI `realtime`, the server default).
    case v1 = "1.0.0"
    /// JSON arrays `[join_ref, ref, topic, event, payload]` plus binary broadcast frames (supabase-js).
    case v2 = "2.0.0"
}

/// A client message that cannot be read, with what a client author needs to fix it.
public struct ProtocolError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What is wrong.
    public var description: String

    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}

/// A message from a client, decoded from either protocol version.
public struct PhoenixInbound: Sendable, Equatable {
    /// The join reference of the channel the message belongs to, when sent.
    public var joinRef: String?
    /// The message reference a reply echoes, when sent.
    public var ref: String?
    /// `realtime:<name>` or `phoenix`.
    public var topic: String
    /// `phx_join`, `broadcast`, `heartbeat`, ...
    public var event: String
    /// The payload as raw JSON (an object), passed on byte for byte.
    public var payload: [UInt8]
    /// A broadcast sent as a binary frame (v2 kind 3): its user event and body.
    public var binaryBroadcast: BroadcastBody?
}

/// The body of one broadcast: the user's event name and payload, JSON or raw bytes.
public struct BroadcastBody: Sendable, Equatable, Codable {
    /// The user's event name (`payload.event`).
    public var event: String
    /// The user's payload: JSON text when `isJSON`, else raw bytes (v2 binary broadcasts).
    public var payload: [UInt8]
    /// Whether `payload` is JSON text.
    public var isJSON: Bool

    /// A broadcast of `event` with `payload`.
    public init(event: String, payload: [UInt8], isJSON: Bool) {
        self.event = event
        self.payload = payload
        self.isJSON = isJSON
    }
}

/// Reads and writes Phoenix channel frames in both protocol versions.
public enum PhoenixFrame {
    /// Longest reference, topic or event accepted (the v2 binary format has one-byte lengths).
    public static let maxNameBytes = 255

    /// Decodes a text frame.
    public static func decode(text bytes: [UInt8], version: ProtocolVersion) throws(ProtocolError) -> PhoenixInbound {
        switch version {
        case .v1:
            let members: [(key: String, value: ArraySlice<UInt8>)]
            do {
                members = try JSONSlices.members(of: bytes)
            } catch {
                throw ProtocolError("a vsn=1.0.0 message must be a JSON object {topic, event, payload, ref, join_ref}: \(error)")
            }
            func member(_ name: String) -> ArraySlice<UInt8>? { members.first { $0.key == name }?.value }
            return try inbound(
                joinRef: member("join_ref"), ref: member("ref"), topic: member("topic"), event: member("event"), payload: member("payload"))
        case .v2:
            let elements: [ArraySlice<UInt8>]
            do {
                elements = try JSONSlices.elements(of: bytes)
            } catch {
                throw ProtocolError("a vsn=2.0.0 text message must be a JSON array [join_ref, ref, topic, event, payload]: \(error)")
            }
            guard elements.count == 5 else {
                throw ProtocolError("a vsn=2.0.0 text message must have 5 elements [join_ref, ref, topic, event, payload], found \(elements.count)")
            }
            return try inbound(joinRef: elements[0], ref: elements[1], topic: elements[2], event: elements[3], payload: elements[4])
        }
    }

    /// Decodes a binary frame: a v2 user broadcast push (kind 3).
    public static func decode(binary bytes: [UInt8]) throws(ProtocolError) -> PhoenixInbound {
        guard bytes.count >= 6 else { throw ProtocolError("a binary message needs a 6-byte header, found \(bytes.count) bytes") }
        guard bytes[0] == 3 else { throw ProtocolError("binary message kind \(bytes[0]) is not accepted (only 3, a user broadcast push)") }
        let lengths = [Int(bytes[1]), Int(bytes[2]), Int(bytes[3]), Int(bytes[4])]
        let encoding = bytes[5]
        guard encoding <= 1 else { throw ProtocolError("binary payload encoding \(encoding) is unknown (0 binary, 1 JSON)") }
        var offset = 6
        var fields: [String] = []
        for length in lengths {
            guard offset + length <= bytes.count else { throw ProtocolError("binary message is shorter than its header says") }
            guard let text = String(validating: bytes[offset..<offset + length], as: UTF8.self), !text.utf8.contains(0) else {
                throw ProtocolError("binary message header fields must be UTF-8 without NUL")
            }
            fields.append(text)
            offset += length
        }
        let body = Array(bytes[offset...])
        if encoding == 1, !JSONSlices.isValid(body) { throw ProtocolError("binary message says JSON but its payload is not JSON") }
        guard fields[2].hasPrefix("realtime:") else { throw ProtocolError("topic must start with \"realtime:\"") }
        return PhoenixInbound(
            joinRef: fields[0].isEmpty ? nil : fields[0], ref: fields[1].isEmpty ? nil : fields[1], topic: fields[2], event: "broadcast",
            payload: Array("{}".utf8), binaryBroadcast: BroadcastBody(event: fields[3], payload: body, isJSON: encoding == 1))
    }

    private static func inbound(
        joinRef: ArraySlice<UInt8>?, ref: ArraySlice<UInt8>?, topic: ArraySlice<UInt8>?, event: ArraySlice<UInt8>?, payload: ArraySlice<UInt8>?
    ) throws(ProtocolError) -> PhoenixInbound {
        guard let topic, let topicText = JSONSlices.string(topic), !topicText.isEmpty else { throw ProtocolError("topic must be a non-empty string") }
        guard let event, let eventText = JSONSlices.string(event), !eventText.isEmpty else { throw ProtocolError("event must be a non-empty string") }
        for (name, text) in [("topic", topicText), ("event", eventText)] {
            guard text.utf8.count <= maxNameBytes else { throw ProtocolError("\(name) is longer than \(maxNameBytes) bytes") }
            guard !text.utf8.contains(0) else { throw ProtocolError("\(name) must not contain NUL") }
        }
        let payloadBytes: [UInt8]
        if let payload, !JSONSlices.isNull(payload) {
            guard payload.first == UInt8(ascii: "{") else { throw ProtocolError("payload must be a JSON object") }
            payloadBytes = Array(payload)
        } else {
            payloadBytes = Array("{}".utf8)
        }
        return PhoenixInbound(
            joinRef: try reference(joinRef, "join_ref"), ref: try reference(ref, "ref"), topic: topicText, event: eventText, payload: payloadBytes)
    }

    /// A reference: a string, a number (kept as its digits) or null.
    private static func reference(_ raw: ArraySlice<UInt8>?, _ name: String) throws(ProtocolError) -> String? {
        guard let raw, !JSONSlices.isNull(raw) else { return nil }
        let text: String
        if let string = JSONSlices.string(raw) {
            text = string
        } else if raw.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }), !raw.isEmpty {
            text = String(decoding: raw, as: UTF8.self)
        } else {
            throw ProtocolError("\(name) must be a string, a number or null")
        }
        guard text.utf8.count <= maxNameBytes, !text.utf8.contains(0) else { throw ProtocolError("\(name) must be at most \(maxNameBytes) bytes without NUL") }
        return text
    }

    /// Encodes a text frame; `payload` is raw JSON (an object).
    public static func encode(version: ProtocolVersion, joinRef: String?, ref: String?, topic: String, event: String, payload: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(payload.count + topic.utf8.count + event.utf8.count + 64)
        func optional(_ text: String?) {
            if let text { JSONStringWriter.append(text.utf8, to: &output) } else { output += Array("null".utf8) }
        }
        switch version {
        case .v1:
            output += Array(#"{"topic":"#.utf8)
            JSONStringWriter.append(topic.utf8, to: &output)
            output += Array(#","event":"#.utf8)
            JSONStringWriter.append(event.utf8, to: &output)
            output += Array(#","payload":"#.utf8)
            output += payload
            output += Array(#","ref":"#.utf8)
            optional(ref)
            output += Array(#","join_ref":"#.utf8)
            optional(joinRef)
            output.append(UInt8(ascii: "}"))
        case .v2:
            output.append(UInt8(ascii: "["))
            optional(joinRef)
            output.append(UInt8(ascii: ","))
            optional(ref)
            output.append(UInt8(ascii: ","))
            JSONStringWriter.append(topic.utf8, to: &output)
            output.append(UInt8(ascii: ","))
            JSONStringWriter.append(event.utf8, to: &output)
            output.append(UInt8(ascii: ","))
            output += payload
            output.append(UInt8(ascii: "]"))
        }
        return output
    }

    /// The `payload` of a JSON broadcast event: `{"type":"broadcast","event":E,"payload":P}`
    /// (with `"meta":M` when given). Nil for a binary body, which JSON cannot carry.
    public static func broadcastPayload(_ body: BroadcastBody, meta: [UInt8]? = nil) -> [UInt8]? {
        guard body.isJSON else { return nil }
        var output = Array(#"{"type":"broadcast","event":"#.utf8)
        JSONStringWriter.append(body.event.utf8, to: &output)
        output += Array(#","payload":"#.utf8)
        output += body.payload
        if let meta {
            output += Array(#","meta":"#.utf8)
            output += meta
        }
        output.append(UInt8(ascii: "}"))
        return output
    }

    /// A v2 server broadcast as a binary frame (kind 4): `[4][topic len][event len][meta len]
    /// [encoding][topic][event][meta][payload]`. Nil when a name is longer than 255 bytes.
    public static func binaryBroadcast(topic: String, body: BroadcastBody, meta: [UInt8] = []) -> [UInt8]? {
        let topicBytes = Array(topic.utf8)
        let eventBytes = Array(body.event.utf8)
        guard topicBytes.count <= 255, eventBytes.count <= 255, meta.count <= 255 else { return nil }
        var output: [UInt8] = [4, UInt8(topicBytes.count), UInt8(eventBytes.count), UInt8(meta.count), body.isJSON ? 1 : 0]
        output.reserveCapacity(5 + topicBytes.count + eventBytes.count + meta.count + body.payload.count)
        output += topicBytes
        output += eventBytes
        output += meta
        output += body.payload
        return output
    }
}
