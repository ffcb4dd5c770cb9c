import CSodium
import Foundation
import MeltyEd25519
import MeltyJSON

/// One entry of the audit log, exactly as stored in `meltybase.audit_log`.
///
/// `hash` is `hex(SHA-256(prevHash + "\n" + canonicalEntry))`, where ``canonicalEntry``
/// is the canonical JSON array `[seq, at, actor, action, target, portal, details]`
/// (see `docs/audit-log.md`). Changing any field, or moving the entry, changes the hash.
public struct AuditEntry: Sendable, Equatable {
    /// Position in the chain: 1, 2, 3, ... without gaps.
    public var seq: Int64
    /// When it was appended, RFC 3339 in UTC with exactly six fractional digits
    /// (`2025-03-01T09:30:00.123456Z`): the database clock, at microsecond precision.
    public var at: String
    /// Who acted: `admin:<email>`, `plugin:<name>`, `system`, ...
    public var actor: String
    /// What happened, dotted lowercase (`setup.completed`, `admin.login.failed`).
    public var action: String
    /// What it happened to (an email, a portal, a secret name).
    public var target: String
    /// The portal concerned, if any.
    public var portal: String?
    /// Free-form facts about the action (never secret values).
    public var details: CanonicalJSON
    /// `hash` of the entry before (64 zeros for entry 1).
    public var prevHash: String
    /// This entry's hash, lowercase hex.
    public var hash: String

    /// `prev_hash` of the first entry.
    public static let genesisHash = String(repeating: "0", count: 64)

    /// The canonical JSON array the hash covers: `[seq,at,actor,action,target,portal,details]`.
    public var canonicalEntry: String {
        CanonicalJSON.array([
            .integer(seq), .string(at), .string(actor), .string(action), .string(target),
            portal.map(CanonicalJSON.string) ?? .null, details,
        ]).text
    }

    /// The hash this entry's fields call for (equal to ``hash`` unless it was tampered with).
    public var computedHash: String {
        Self.hash(prevHash: prevHash, canonicalEntry: canonicalEntry)
    }

    /// `hex(SHA-256(prevHash + "\n" + canonicalEntry))` over the UTF-8 bytes.
    public static func hash(prevHash: String, canonicalEntry: String) -> String {
        let input = Array((prevHash + "\n" + canonicalEntry).utf8)
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        crypto_hash_sha256(&digest, input, UInt64(input.count))
        return ByteEncoding.hex(digest)
    }

    /// ``at`` as a `Date` (microseconds kept as far as `Double` allows).
    public var date: Date? { Self.date(fromTimestamp: at) }

    /// Parses `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    static func date(fromTimestamp text: String) -> Date? {
        let parts = text.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, parts[1].hasSuffix("Z"), let micros = Int(parts[1].dropLast()),
            let seconds = ISO8601DateFormatter().date(from: parts[0] + "Z")
        else { return nil }
        return seconds.addingTimeInterval(Double(micros) / 1_000_000)
    }

    /// Formats `date` the way ``at`` is written (to the nearest microsecond, UTC), so that
    /// ``date`` formats back to the same text.
    static func timestamp(from date: Date) -> String {
        let totalMicros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        let seconds = (totalMicros / 1_000_000).rounded(.down)
        let micros = Int(totalMicros - seconds * 1_000_000)
        let formatter = ISO8601DateFormatter()
        let whole = formatter.string(from: Date(timeIntervalSince1970: seconds))
        return whole.dropLast() + "." + String(format: "%06d", micros) + "Z"
    }
}

extension AuditEntry: Encodable {
    private enum CodingKeys: String, CodingKey {
        case seq, at, actor, action, target, portal, details
        case prevHash = "prev_hash"
        case hash
    }

    /// `{seq, at, actor, action, target, portal, details, prev_hash, hash}` (portal may be null).
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(seq, forKey: .seq)
        try container.encode(at, forKey: .at)
        try container.encode(actor, forKey: .actor)
        try container.encode(action, forKey: .action)
        try container.encode(target, forKey: .target)
        try container.encode(portal, forKey: .portal)
        try container.encode(details, forKey: .details)
        try container.encode(prevHash, forKey: .prevHash)
        try container.encode(hash, forKey: .hash)
    }
}
