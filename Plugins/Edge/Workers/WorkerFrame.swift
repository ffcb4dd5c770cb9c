/// One frame of the host <-> worker protocol (`edge-protocol.md`, version 1): a 9-byte
/// header (type, request id, payload length, big-endian) and at most 1 MiB of payload.
struct WorkerFrame: Sendable, Equatable {
    /// Frame types, both directions.
    enum Kind: UInt8, Sendable {
        case request = 0x01
        case body = 0x02
        case bodyEnd = 0x03
        case cancel = 0x04
        case credit = 0x05
        case drain = 0x06
        case ready = 0x11
        case bodyPull = 0x12
        case responseHead = 0x13
        case responseBody = 0x14
        case responseEnd = 0x15
        case error = 0x16
        case log = 0x17
    }

    /// The largest payload either side may send.
    static let maxPayload = 1_048_576
    static let headerSize = 9

    var kind: Kind
    var id: UInt32
    var payload: [UInt8]

    init(_ kind: Kind, id: UInt32, payload: [UInt8] = []) {
        self.kind = kind
        self.id = id
        self.payload = payload
    }

    /// The frame's bytes (the caller keeps payloads within ``maxPayload``).
    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.headerSize + payload.count)
        bytes.append(kind.rawValue)
        appendBigEndian(id, to: &bytes)
        appendBigEndian(UInt32(truncatingIfNeeded: payload.count), to: &bytes)
        bytes += payload
        return bytes
    }

    private func appendBigEndian(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift in [24, 16, 8, 0] { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }
}

/// What the worker wrote that is not a frame: the worker is killed.
struct WorkerFrameError: Error, Sendable, CustomStringConvertible {
    let description: String
}

/// Splits the worker's stdout into frames as bytes arrive, in any cut.
struct WorkerFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    /// Adds bytes read from the worker.
    mutating func append(_ bytes: some Collection<UInt8>) {
        // Drop consumed bytes before growing, so the buffer stays about one frame long.
        if start > 0 && (start >= 65536 || start == buffer.count) {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole frame, nil when more bytes are needed; throws on an unknown type or a
    /// payload over 1 MiB.
    mutating func next() throws(WorkerFrameError) -> WorkerFrame? {
        let available = buffer.count - start
        guard available >= WorkerFrame.headerSize else { return nil }
        let type = buffer[start]
        guard let kind = WorkerFrame.Kind(rawValue: type), type >= 0x11 else {
            throw WorkerFrameError(description: "the worker wrote an unknown frame type 0x\(String(type, radix: 16))")
        }
        let id = readBigEndian(at: start + 1)
        let length = Int(readBigEndian(at: start + 5))
        guard length <= WorkerFrame.maxPayload else {
            throw WorkerFrameError(description: "the worker wrote a frame of \(length) bytes (at most \(WorkerFrame.maxPayload))")
        }
        guard available >= WorkerFrame.headerSize + length else { return nil }
        let payloadStart = start + WorkerFrame.headerSize
        let payload = Array(buffer[payloadStart..<(payloadStart + length)])
        start = payloadStart + length
        return WorkerFrame(kind, id: id, payload: payload)
    }

    private func readBigEndian(at index: Int) -> UInt32 {
        var value: UInt32 = 0
        for offset in 0..<4 { value = value << 8 | UInt32(buffer[index + offset]) }
        return value
    }
}
