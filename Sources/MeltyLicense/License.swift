import Foundation
import MeltyJSON

/// A MeltyBase license: the fields a vendor signs and the kernel verifies offline.
///
/// A value is always valid: the initialisers check every field, so a `License` in hand has
/// a lowercase UUID id, a plausible owner email, a known tier, 1 to 100 000 seats and whole
/// second times. ``canonicalPayload`` is the exact byte string that gets signed; the format
/// is specified in `docs/licenses.md`, so that other implementations can reproduce it.
public struct License: Sendable, Hashable {
    /// What the license sells.
    public enum Tier: String, Sendable, CaseIterable {
        /// A single developer or a small team.
        case indie
        /// A company.
        case commercial
    }

    /// Unique id of the license: a lowercase UUID (`8-4-4-4-12` hex digits).
    public let id: String
    /// Licensee name, at most 200 Unicode scalars, without control characters; may be empty.
    public let ownerName: String
    /// Licensee email: printable ASCII `local@domain.tld`, at most 254 bytes.
    public let ownerEmail: String
    /// Tier sold.
    public let tier: Tier
    /// Number of admin seats, 1 to 100 000.
    public let seats: Int
    /// Seconds since 1970 (UTC) of `issued_at` and `expires_at`: the payload carries whole seconds.
    private let issuedAtSeconds: Int64
    private let expiresAtSeconds: Int64?
    /// The instance the license is bound to (1 to 128 of `A-Z a-z 0-9 . _ : -`), or nil for any instance.
    public let instance: String?

    /// When the license was issued (whole seconds).
    public var issuedAt: Date { Date(timeIntervalSince1970: TimeInterval(issuedAtSeconds)) }
    /// When the license stops being valid (whole seconds), or nil for never.
    public var expiresAt: Date? { expiresAtSeconds.map { Date(timeIntervalSince1970: TimeInterval($0)) } }

    /// Every license string starts with this version tag and a dot.
    public static let formatTag = "MB1"
    /// Longest license string a verifier reads (8 KiB); real ones are a few hundred bytes.
    public static let maximumStringBytes = 8192
    /// Allowed number of seats.
    public static let seatRange = 1...100_000
    /// The payload's field names, in canonical (sorted) order.
    public static let fieldNames = ["expires_at", "id", "instance", "issued_at", "owner_email", "owner_name", "seats", "tier"]

    /// A license with these fields; `issuedAt` and `expiresAt` are truncated to whole seconds.
    /// Throws ``LicenseError/malformed(_:)`` naming the first field that is not valid.
    public init(
        id: String = UUID().uuidString.lowercased(), ownerName: String = "", ownerEmail: String, tier: Tier, seats: Int,
        issuedAt: Date, expiresAt: Date? = nil, instance: String? = nil
    ) throws(LicenseError) {
        try self.init(
            id: id, ownerName: ownerName, ownerEmail: ownerEmail, tier: tier, seats: seats,
            issuedAtSeconds: try Self.seconds(issuedAt, field: "issued_at"),
            expiresAtSeconds: try expiresAt.map { date throws(LicenseError) in try Self.seconds(date, field: "expires_at") },
            instance: instance)
    }

    private init(
        id: String, ownerName: String, ownerEmail: String, tier: Tier, seats: Int,
        issuedAtSeconds: Int64, expiresAtSeconds: Int64?, instance: String?
    ) throws(LicenseError) {
        guard Self.isCanonicalUUID(id) else {
            throw .malformed("id must be a lowercase UUID like 0b6d3c52-3f0e-4c1e-9a57-2f1d2a4c7e90, found \(Self.quoted(id))")
        }
        guard ownerName.unicodeScalars.count <= 200 else {
            throw .malformed("owner_name is longer than 200 characters")
        }
        if let scalar = ownerName.unicodeScalars.first(where: Self.isForbiddenInText) {
            throw .malformed("owner_name contains the control character U+\(String(format: "%04X", scalar.value))")
        }
        guard Self.isPlausibleEmail(ownerEmail) else {
            throw .malformed("owner_email \(Self.quoted(ownerEmail)) is not an email address (printable ASCII local@domain.tld, at most 254 characters)")
        }
        guard Self.seatRange.contains(seats) else {
            throw .malformed("seats must be between \(Self.seatRange.lowerBound) and \(Self.seatRange.upperBound), found \(seats)")
        }
        if let expiresAtSeconds, expiresAtSeconds <= issuedAtSeconds {
            throw .malformed("expires_at (\(LicenseTimestamp.format(expiresAtSeconds))) must be after issued_at (\(LicenseTimestamp.format(issuedAtSeconds)))")
        }
        if let instance, !Self.isValidInstance(instance) {
            throw .malformed("instance must be 1 to 128 letters, digits, '.', '_', ':' or '-', found \(Self.quoted(instance))")
        }
        self.id = id
        self.ownerName = ownerName
        self.ownerEmail = ownerEmail
        self.tier = tier
        self.seats = seats
        self.issuedAtSeconds = issuedAtSeconds
        self.expiresAtSeconds = expiresAtSeconds
        self.instance = instance
    }

    // MARK: Canonical payload

    /// The bytes that are signed: a JSON object of the fields above (absent optionals
    /// omitted), keys in byte order, no whitespace, strings escaped minimally (only `"`,
    /// `\` and control characters), non-ASCII as raw UTF-8, `seats` as a plain integer.
    public var canonicalPayload: [UInt8] {
        var fields: [String: CanonicalJSON] = [
            "id": .string(id),
            "issued_at": .string(LicenseTimestamp.format(issuedAtSeconds)),
            "owner_email": .string(ownerEmail),
            "owner_name": .string(ownerName),
            "seats": .integer(Int64(seats)),
            "tier": .string(tier.rawValue),
        ]
        if let expiresAtSeconds { fields["expires_at"] = .string(LicenseTimestamp.format(expiresAtSeconds)) }
        if let instance { fields["instance"] = .string(instance) }
        // The fields hold no control characters (the initialiser refuses them), so the
        // canonical writer's NUL rule never applies: this is RFC 8785's text for them.
        return Array(CanonicalJSON.object(fields).text.utf8)
    }

    /// Decodes a payload whose signature has already been checked. Refuses anything that
    /// is not exactly the canonical encoding of valid fields, so one license has one
    /// payload (no duplicate keys, no extra fields, no alternative spellings).
    init(payload: [UInt8]) throws(LicenseError) {
        guard String(validating: payload, as: UTF8.self) != nil else { throw .malformed("the payload is not valid UTF-8") }
        let fields: [String: PayloadJSONReader.Value]
        do {
            var reader = PayloadJSONReader(bytes: payload)
            fields = try reader.readObject()
        } catch {
            throw .malformed(error.message)
        }
        if let unknown = fields.keys.sorted().first(where: { !Self.fieldNames.contains($0) }) {
            throw .malformed("unknown field \(Self.quoted(unknown)) (a \(Self.formatTag) payload holds only \(Self.fieldNames.joined(separator: ", ")))")
        }
        func string(_ name: String) throws(LicenseError) -> String? {
            switch fields[name] {
            case nil: return nil
            case .string(let value): return value
            case let other?:
                let hint = other == .null ? "; leave the field out instead" : ""
                throw .malformed("field \"\(name)\" must be a string, found \(other.kind)\(hint)")
            }
        }
        func required(_ name: String) throws(LicenseError) -> String {
            guard let value = try string(name) else { throw .malformed("missing field \"\(name)\"") }
            return value
        }
        func timestamp(_ name: String, _ text: String) throws(LicenseError) -> Int64 {
            guard let seconds = LicenseTimestamp.parse(text) else {
                throw .malformed("\(name) must be an RFC 3339 UTC time in whole seconds like 2025-06-01T09:30:00Z, found \(Self.quoted(text))")
            }
            return seconds
        }

        let seats: Int
        switch fields["seats"] {
        case nil: throw .malformed("missing field \"seats\"")
        case .number(let lexeme):
            guard !lexeme.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else {
                throw .malformed("seats must be a whole number, found \(lexeme.prefix(32))")
            }
            guard let value = Int(lexeme) else {
                throw .malformed("seats must be between \(Self.seatRange.lowerBound) and \(Self.seatRange.upperBound), found \(lexeme.prefix(32))")
            }
            seats = value
        case let other?: throw .malformed("field \"seats\" must be a number, found \(other.kind)")
        }
        let tierName = try required("tier")
        guard let tier = Tier(rawValue: tierName) else {
            throw .malformed("tier must be \"indie\" or \"commercial\", found \(Self.quoted(tierName))")
        }
        let id = try required("id")
        let ownerName = try required("owner_name")
        let ownerEmail = try required("owner_email")
        let issuedAt = try timestamp("issued_at", try required("issued_at"))
        let expiresAt = try string("expires_at").map { text throws(LicenseError) in try timestamp("expires_at", text) }
        let instance = try string("instance")
        try self.init(
            id: id, ownerName: ownerName, ownerEmail: ownerEmail, tier: tier, seats: seats,
            issuedAtSeconds: issuedAt, expiresAtSeconds: expiresAt, instance: instance)
        guard canonicalPayload == payload else {
            throw .malformed("the payload is not in canonical form (sorted keys, no whitespace, minimal escapes; see docs/licenses.md)")
        }
    }

    // MARK: Times

    /// `date` as RFC 3339 UTC in whole seconds (`2025-06-01T09:30:00Z`), as in the payload.
    public static func formatTimestamp(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        guard seconds.isFinite else { return "invalid date" }
        return LicenseTimestamp.format(Int64(max(min(seconds, 1e15), -1e15)))
    }

    /// The date of an RFC 3339 UTC time in whole seconds (`2025-06-01T09:30:00Z`), or nil.
    public static func parseTimestamp(_ text: String) -> Date? {
        LicenseTimestamp.parse(text).map { Date(timeIntervalSince1970: TimeInterval($0)) }
    }

    private static func seconds(_ date: Date, field: String) throws(LicenseError) -> Int64 {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        guard seconds.isFinite, seconds >= Double(LicenseTimestamp.range.lowerBound), seconds <= Double(LicenseTimestamp.range.upperBound) else {
            throw .malformed("\(field) must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
        }
        return Int64(seconds)
    }

    // MARK: Field rules

    private static func isCanonicalUUID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard byte == UInt8(ascii: "-") else { return false }
            } else {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte) else { return false }
            }
        }
        return true
    }

    /// `local@domain.tld` in printable ASCII without the characters that need quoting in
    /// an address (`"(),:;<>[\]`) or spaces: deliberately simpler than RFC 5321, and
    /// exactly the same rule in the issuer and the verifier.
    static func isPlausibleEmail(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (3...254).contains(bytes.count) else { return false }
        let forbidden = Set("\"(),:;<>[\\]".utf8)
        guard bytes.allSatisfy({ (0x21...0x7E).contains($0) && !forbidden.contains($0) }) else { return false }
        let halves = bytes.split(separator: UInt8(ascii: "@"), omittingEmptySubsequences: false)
        guard halves.count == 2, (1...64).contains(halves[0].count) else { return false }
        let labels = halves[1].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return labels.count >= 2 && labels.allSatisfy { !$0.isEmpty }
    }

    private static func isValidInstance(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...128).contains(bytes.count) else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return true
            case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"): return true
            default: return false
            }
        }
    }

    /// C0 and C1 controls, DEL, line and paragraph separators, and the bidirectional
    /// overrides that can make a name display as something else.
    private static func isForbiddenInText(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x200E, 0x200F, 0x2028...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// A value for an error message: quoted, at most 64 characters, controls escaped.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for (index, scalar) in text.unicodeScalars.enumerated() {
            if index == 64 {
                result += "…"
                break
            }
            if scalar == "\"" || scalar == "\\" || isForbiddenInText(scalar) {
                result += scalar.escaped(asASCII: true)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}

/// RFC 3339 UTC times in whole seconds, exactly `YYYY-MM-DDTHH:MM:SSZ`, years 1970 to 9999.
/// Computed by hand (proleptic Gregorian calendar, no leap seconds) so the format never
/// depends on a locale, a time zone database or a formatter's options.
enum LicenseTimestamp {
    /// 1970-01-01T00:00:00Z ... 9999-12-31T23:59:59Z.
    static let range: ClosedRange<Int64> = 0...253_402_300_799

    static func format(_ seconds: Int64) -> String {
        let clamped = min(max(seconds, range.lowerBound), range.upperBound)
        let days = clamped / 86_400
        let time = clamped % 86_400
        let (year, month, day) = civil(fromDays: days)
        return String(format: "%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ", year, month, day, time / 3600, time % 3600 / 60, time % 60)
    }

    static func parse(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count == 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T"),
            bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"), bytes[19] == UInt8(ascii: "Z")
        else { return nil }
        func number(_ from: Int, _ count: Int) -> Int64? {
            var value: Int64 = 0
            for byte in bytes[from..<(from + count)] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
            year >= 1970, (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
            hour < 24, minute < 60, second < 60
        else { return nil }
        return days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`, for years ≥ 1).
    private static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The inverse of ``days(year:month:day:)`` for days ≥ 0.
    private static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = z / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

/// A strict RFC 8259 reader for one JSON object of simple values. Foundation's
/// `JSONSerialization` is not used because it blurs `true`, `1` and `1.0` into one
/// `NSNumber` and silently keeps the last of duplicate keys; here each value keeps its
/// JSON kind, duplicates are refused, and nesting is bounded.
private struct PayloadJSONReader {
    /// A JSON value, reduced to what the payload checks need.
    enum Value: Equatable {
        case string(String)
        /// The number's text as written, e.g. `20` or `2.5e1`.
        case number(String)
        case bool
        case null
        case array
        case object

        var kind: String {
            switch self {
            case .string: "a string"
            case .number: "a number"
            case .bool: "a boolean"
            case .null: "null"
            case .array: "an array"
            case .object: "an object"
            }
        }
    }

    struct Failure: Error {
        var message: String
    }

    private static let maximumDepth = 16
    let bytes: [UInt8]
    private var index = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The top-level object's fields; the whole input must be that one object.
    mutating func readObject() throws(Failure) -> [String: Value] {
        skipWhitespace()
        guard peek == UInt8(ascii: "{") else { throw Failure(message: "the payload is not a JSON object") }
        var fields: [String: Value] = [:]
        try readMembers(depth: 1) { (key: String, value: Value) throws(Failure) in
            guard fields.updateValue(value, forKey: key) == nil else {
                throw Failure(message: "field \(License.quoted(key)) appears twice")
            }
        }
        skipWhitespace()
        guard index == bytes.count else { throw failure("unexpected data after the JSON object") }
        return fields
    }

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    private func failure(_ what: String) -> Failure {
        Failure(message: "the payload is not valid JSON: \(what) at byte \(index)")
    }

    private mutating func skipWhitespace() {
        while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    private mutating func expect(_ byte: UInt8) throws(Failure) {
        guard peek == byte else { throw failure("expected '\(Character(Unicode.Scalar(byte)))'") }
        index += 1
    }

    /// Reads `{ "key": value, ... }` starting at `{`, handing each member to `member`.
    private mutating func readMembers(depth: Int, _ member: (String, Value) throws(Failure) -> Void) throws(Failure) {
        try expect(UInt8(ascii: "{"))
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw failure("expected a field name") }
            let key = try readString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"))
            skipWhitespace()
            try member(key, try readValue(depth: depth + 1))
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return
            default: throw failure("expected ',' or '}'")
            }
        }
    }

    private mutating func readValue(depth: Int) throws(Failure) -> Value {
        guard depth <= Self.maximumDepth else { throw failure("nesting deeper than \(Self.maximumDepth) levels") }
        guard let byte = peek else { throw failure("unexpected end") }
        switch byte {
        case UInt8(ascii: "\""): return .string(try readString())
        case UInt8(ascii: "{"):
            try readMembers(depth: depth) { (_: String, _: Value) throws(Failure) in }
            return .object
        case UInt8(ascii: "["):
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "]") {
                index += 1
                return .array
            }
            while true {
                skipWhitespace()
                _ = try readValue(depth: depth + 1)
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"):
                    index += 1
                    return .array
                default: throw failure("expected ',' or ']'")
                }
            }
        case UInt8(ascii: "t"):
            try readLiteral("true")
            return .bool
        case UInt8(ascii: "f"):
            try readLiteral("false")
            return .bool
        case UInt8(ascii: "n"):
            try readLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try readNumber())
        default: throw failure("unexpected character")
        }
    }

    private mutating func readLiteral(_ literal: String) throws(Failure) {
        for byte in literal.utf8 {
            guard peek == byte else { throw failure("unexpected character") }
            index += 1
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, returned as written.
    private mutating func readNumber() throws(Failure) -> String {
        let start = index
        func isDigit(_ byte: UInt8?) -> Bool { byte.map { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } ?? false }
        if peek == UInt8(ascii: "-") { index += 1 }
        guard isDigit(peek) else { throw failure("a number needs digits") }
        if peek == UInt8(ascii: "0") {
            index += 1
        } else {
            while isDigit(peek) { index += 1 }
        }
        if peek == UInt8(ascii: ".") {
            index += 1
            guard isDigit(peek) else { throw failure("a number needs digits after '.'") }
            while isDigit(peek) { index += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard isDigit(peek) else { throw failure("a number needs digits in its exponent") }
            while isDigit(peek) { index += 1 }
        }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// A string starting at `"`. The input is known to be valid UTF-8, and `"` and `\`
    /// never occur inside a multi-byte sequence, so other bytes are copied as they are.
    private mutating func readString() throws(Failure) -> String {
        try expect(UInt8(ascii: "\""))
        var output: [UInt8] = []
        while true {
            guard let byte = peek else { throw failure("unterminated string") }
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: output, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let escape = peek else { throw failure("unterminated string") }
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(escape)
                case UInt8(ascii: "b"): output.append(0x08)
                case UInt8(ascii: "f"): output.append(0x0C)
                case UInt8(ascii: "n"): output.append(0x0A)
                case UInt8(ascii: "r"): output.append(0x0D)
                case UInt8(ascii: "t"): output.append(0x09)
                case UInt8(ascii: "u"):
                    var value = try readHex4()
                    if (0xD800...0xDBFF).contains(value) {
                        guard peek == UInt8(ascii: "\\") else { throw failure("unpaired surrogate escape") }
                        index += 1
                        guard peek == UInt8(ascii: "u") else { throw failure("unpaired surrogate escape") }
                        index += 1
                        let low = try readHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw failure("unpaired surrogate escape") }
                        value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(value) {
                        throw failure("unpaired surrogate escape")
                    }
                    guard let scalar = Unicode.Scalar(value) else { throw failure("invalid \\u escape") }
                    output += Array(String(scalar).utf8)
                default:
                    throw failure("invalid escape")
                }
            case 0x00..<0x20:
                throw failure("control character in a string")
            default:
                output.append(byte)
            }
        }
    }

    private mutating func readHex4() throws(Failure) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek else { throw failure("unterminated \\u escape") }
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw failure("invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}
