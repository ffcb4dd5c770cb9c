import Crypto
import EdgeCore
import Foundation
import MeltyJSON

/// The SHA-256 (hex) of a bundle: the same value the store records for its version.
enum FunctionDigest {
    static func sha256(of bundle: FunctionBundle) -> String { sha256(bundle.canonicalListing) }

    /// The SHA-256 (hex) of `text`'s UTF-8.
    static func sha256(text: String) -> String { sha256(Array(text.utf8)) }

    private static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}

/// ISO 8601 with milliseconds, as the admin API writes times.
private func timestamp(_ date: Date) -> JSONValue {
    .string(date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)))
}

extension FunctionRecord {
    /// The admin API's view of a function.
    var json: [String: JSONValue] {
        [
            "name": .string(name.value), "active_version": .number(Double(activeVersion)), "verify_jwt": .bool(manifest.verifyJWT),
            "entrypoint": manifest.entrypoint.map(JSONValue.string) ?? .null, "sha256": .string(sha256),
            "allow_net": .array(manifest.allowNet.map(JSONValue.string)), "secrets": .array(manifest.secrets.map(JSONValue.string)),
            "created_at": timestamp(createdAt), "updated_at": timestamp(updatedAt),
        ]
    }
}

extension FunctionVersion {
    /// The admin API's view of a version.
    var json: [String: JSONValue] {
        [
            "version": .number(Double(version)), "sha256": .string(sha256), "size": .number(Double(size)), "active": .bool(active),
            "created_at": timestamp(createdAt), "created_by": .string(createdBy),
        ]
    }
}

extension EdgeCore.FunctionLogLine {
    /// The admin API's view of a log line.
    var json: JSONValue {
        .object([
            "id": .number(Double(id)), "version": .number(Double(version)), "request_id": .string(requestID), "level": .string(level),
            "message": .string(message), "at": timestamp(at),
        ])
    }

    /// One line for a terminal: time, request id, level, message.
    var text: String {
        let time = at.formatted(.iso8601.time(includingFractionalSeconds: true))
        return "\(time) \(requestID.isEmpty ? "-" : requestID) \(level) \(message)"
    }
}
