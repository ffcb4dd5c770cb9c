import Foundation

/// A JSON value with one deterministic serialisation, so that a hash computed over it
/// today can be recomputed from the database tomorrow.
///
/// The canonical text (``text``) is defined in `docs/audit-log.md`: no whitespace,
/// object keys sorted by their UTF-8 bytes, strings escaped minimally, numbers written
/// from their value (an integer that fits in 64 bits as plain digits, any other number as
/// the shortest decimal that reads back as the same IEEE-754 double).
public enum CanonicalJSON: Sendable, Equatable {
    /// Why a value could not be converted or parsed.
    public struct Failure: Error, CustomStringConvertible, Equatable {
        /// What is wrong (for example "details hold a Date, which has no JSON form; ...").
        public var description: String

        /// A failure saying `description`.
        public init(_ description: String) {
            self.description = description
        }
    }

    case null
    case bool(Bool)
    /// A number whose value is an integer in `Int64`'s range.
    case integer(Int64)
    /// Any other finite number.
    case number(Double)
    case string(String)
    case array([CanonicalJSON])
    case object([String: CanonicalJSON])

    /// `text` with every NUL replaced by U+FFFD: Postgres text and `jsonb` cannot hold NUL, and
    /// an audit entry's hash must cover exactly what is stored, so details are built that way.
    public static func storable(_ text: String) -> String {
        text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : text
    }

    /// Parses JSON `text` (any value, not only objects).
    public init(parsing text: String) throws {
        do {
            self = try JSONDecoder().decode(CanonicalJSON.self, from: Data(text.utf8))
        } catch {
            throw Failure("details are not valid JSON: \(Self.reason(error))")
        }
    }

    /// Converts what `JSONSerialization` produces or a Swift literal holds: `String`, `Bool`,
    /// integers, `Double`, `Float`, `NSNumber`, `NSNull`, `nil`, `[Any]`, `[String: Any]`
    /// (and ``CanonicalJSON`` itself). Throws for anything else and for NaN or infinity.
    public init(_ value: Any?) throws {
        guard let value else {
            self = .null
            return
        }
        // An optional boxed in `Any` (`[String: Any]` holding an `Int?`): unwrap it.
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            self = try CanonicalJSON(mirror.children.first?.value)
            return
        }
        switch value {
        case let json as CanonicalJSON: self = json
        case let string as String: self = .string(Self.storable(string))
        case let substring as Substring: self = .string(Self.storable(String(substring)))
        case is NSNull: self = .null
        case let dictionary as [String: Any?]:
            self = .object(try Dictionary(dictionary.map { (Self.storable($0.key), try CanonicalJSON($0.value)) }, uniquingKeysWith: { first, _ in first }))
        case let array as [Any?]:
            self = .array(try array.map { try CanonicalJSON($0) })
        default:
            self = try Self.scalar(value)
        }
    }

    /// Numbers and booleans. Native Swift types are matched exactly first because on Linux
    /// `Int` and `Bool` both also cast to `NSNumber`.
    private static func scalar(_ value: Any) throws -> CanonicalJSON {
        switch value {
        case let bool as Bool where type(of: value) == Bool.self: return .bool(bool)
        case let int as Int where type(of: value) == Int.self: return .integer(Int64(int))
        case let int as Int64 where type(of: value) == Int64.self: return .integer(int)
        case let int as Int32 where type(of: value) == Int32.self: return .integer(Int64(int))
        case let int as Int16 where type(of: value) == Int16.self: return .integer(Int64(int))
        case let int as Int8 where type(of: value) == Int8.self: return .integer(Int64(int))
        case let int as UInt where type(of: value) == UInt.self: return try numeric(Double(exactly: int) ?? Double(int), exact: Int64(exactly: int))
        case let int as UInt64 where type(of: value) == UInt64.self: return try numeric(Double(int), exact: Int64(exactly: int))
        case let int as UInt32 where type(of: value) == UInt32.self: return .integer(Int64(int))
        case let int as UInt16 where type(of: value) == UInt16.self: return .integer(Int64(int))
        case let int as UInt8 where type(of: value) == UInt8.self: return .integer(Int64(int))
        case let double as Double where type(of: value) == Double.self: return try numeric(double)
        case let float as Float where type(of: value) == Float.self: return try numeric(Double(float))
        case let number as NSNumber:
            if type(of: number) == type(of: NSNumber(value: true)) { return .bool(number.boolValue) }
            switch String(cString: number.objCType) {
            case "d", "f": return try Self.numeric(number.doubleValue)
            case "Q", "L": return try Self.numeric(number.doubleValue, exact: Int64(exactly: number.uint64Value))
            default: return .integer(number.int64Value)
            }
        default:
            throw Failure("details hold a \(type(of: value)), which has no JSON form; use strings, numbers, booleans, arrays and [String: Any]")
        }
    }

    /// A double by value: integral values in `Int64`'s range become ``integer(_:)``.
    public static func numeric(_ double: Double, exact: Int64? = nil) throws -> CanonicalJSON {
        if let exact { return .integer(exact) }
        guard double.isFinite else { throw Failure("details hold \(double), which JSON cannot represent") }
        if let integer = Int64(exactly: double) { return .integer(integer) }
        return .number(double)
    }

    /// The canonical serialisation (see the type's documentation).
    public var text: String {
        var output = ""
        write(into: &output)
        return output
    }

    private func write(into output: inout String) {
        switch self {
        case .null: output += "null"
        case .bool(let value): output += value ? "true" : "false"
        case .integer(let value): output += String(value)
        case .number(let value): output += value.description
        case .string(let value): Self.writeString(value, into: &output)
        case .array(let values):
            output += "["
            for (index, value) in values.enumerated() {
                if index > 0 { output += "," }
                value.write(into: &output)
            }
            output += "]"
        case .object(let members):
            output += "{"
            let keys = members.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (index, key) in keys.enumerated() {
                if index > 0 { output += "," }
                Self.writeString(key, into: &output)
                output += ":"
                members[key]?.write(into: &output)
            }
            output += "}"
        }
    }

    /// `"` and `\` escaped; U+0008, U+0009, U+000A, U+000C, U+000D as `\b \t \n \f \r`;
    /// other characters below U+0020 as `\u00xx` (lowercase hex), except NUL, which Postgres's
    /// `jsonb` cannot hold: it is written as U+FFFD, so the text hashed is the text stored;
    /// everything else as is.
    private static func writeString(_ string: String, into output: inout String) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(string.utf8.count + 2)
        JSONStringWriter.append(string.utf8, to: &bytes, nul: .replacementCharacter)
        output += String(decoding: bytes, as: UTF8.self)
    }

    private static func reason(_ error: Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            return (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? context.debugDescription
        }
        return "\(error)"
    }
}

extension CanonicalJSON: Codable {
    /// Decodes any JSON value; numbers by value as in ``numeric(_:exact:)``.
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let bool = try? container.decode(Bool.self) {
            self = .bool(bool)
        } else if let integer = try? container.decode(Int64.self) {
            self = .integer(integer)
        } else if let double = try? container.decode(Double.self) {
            self = try Self.numeric(double)
        } else if let string = try? container.decode(String.self) {
            self = .string(Self.storable(string))
        } else if let array = try? container.decode([CanonicalJSON].self) {
            self = .array(array)
        } else {
            let members = try container.decode([String: CanonicalJSON].self)
            self = .object(Dictionary(members.map { (Self.storable($0.key), $0.value) }, uniquingKeysWith: { first, _ in first }))
        }
    }

    /// Encodes the same value (key order is the encoder's; use ``text`` for canonical bytes).
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let values): try container.encode(values)
        case .object(let members): try container.encode(members)
        }
    }
}
