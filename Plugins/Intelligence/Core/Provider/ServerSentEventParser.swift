/// Splits a `text/event-stream` body into events' `data`, fed in pieces of any size: lines
/// end in LF, CRLF or CR (a CRLF split between two pieces counts once), comment lines
/// (`:`) and fields other than `data` are skipped, several `data` lines of one event are
/// joined with `\n`, a blank line ends an event. A line longer than `maxLineBytes` is an
/// error instead of growing without bound.
public struct ServerSentEventParser: Sendable {
    /// One event's type (`event:`, nil for the default `message`) and data.
    public struct Event: Sendable, Equatable {
        /// The `event:` field, when present.
        public var type: String?
        /// The `data:` lines joined with `\n`.
        public var data: String
    }

    /// A line longer than the limit.
    public struct LineTooLong: Error, Sendable {
        /// The limit that was passed.
        public var limit: Int
    }

    /// The longest line accepted, in bytes.
    public let maxLineBytes: Int
    private var line: [UInt8] = []
    private var data: [String] = []
    private var type: String?
    private var afterCR = false

    /// A parser refusing lines longer than `maxLineBytes`.
    public init(maxLineBytes: Int = 4 << 20) {
        self.maxLineBytes = maxLineBytes
    }

    /// The events completed by `bytes`.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(LineTooLong) -> [Event] {
        var events: [Event] = []
        for byte in bytes {
            if afterCR {
                afterCR = false
                if byte == 0x0A { continue }
            }
            if byte == 0x0A || byte == 0x0D {
                afterCR = byte == 0x0D
                if let event = endLine() { events.append(event) }
                continue
            }
            guard line.count < maxLineBytes else { throw LineTooLong(limit: maxLineBytes) }
            line.append(byte)
        }
        return events
    }

    /// The event still open when the body ended (a last line and event without their line
    /// breaks), if any.
    public mutating func finish() -> Event? {
        var event: Event?
        if !line.isEmpty { event = endLine() }
        if event == nil, !data.isEmpty { event = endEvent() }
        return event
    }

    private mutating func endLine() -> Event? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty { return data.isEmpty ? nil : endEvent() }
        if line.first == UInt8(ascii: ":") { return nil }
        let text = String(decoding: line, as: UTF8.self)
        let field: Substring
        var value: Substring
        if let colon = text.firstIndex(of: ":") {
            field = text[..<colon]
            value = text[text.index(after: colon)...]
            if value.first == " " { value = value.dropFirst() }
        } else {
            field = text[...]
            value = ""
        }
        switch field {
        case "data": data.append(String(value))
        case "event": type = String(value)
        default: break
        }
        return nil
    }

    private mutating func endEvent() -> Event {
        defer {
            data.removeAll()
            type = nil
        }
        return Event(type: type, data: data.joined(separator: "\n"))
    }
}
