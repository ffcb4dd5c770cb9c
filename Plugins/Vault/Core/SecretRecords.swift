import Foundation
import MeltyPostgres

/// What the Vault tells about a secret without its value.
public struct SecretMetadata: Sendable, Equatable {
    /// Name within the portal.
    public var name: String
    /// Free text from the creator.
    public var description: String?
    /// Version a plain read returns.
    public var currentVersion: Int
    /// ISO 8601 timestamps.
    public var createdAt: String
    /// Time of the last version or change.
    public var updatedAt: String
    /// Set once soft-deleted.
    public var deletedAt: String?

    /// The JSON object the HTTP API and `vault.v1` return.
    public var json: [String: Any] {
        [
            "name": name, "description": description ?? NSNull(), "version": currentVersion,
            "created_at": createdAt, "updated_at": updatedAt, "deleted_at": deletedAt ?? NSNull(),
        ]
    }

    static let columns = """
        name, description, current_version, \(timestamp("created_at")) AS created_at,
        \(timestamp("updated_at")) AS updated_at, \(timestamp("deleted_at")) AS deleted_at
        """

    static func timestamp(_ column: String) -> String {
        #"to_char(\#(column) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#
    }

    static func rows(_ result: PostgresRows) -> [SecretMetadata] {
        (0..<result.rows.count).map { row in
            SecretMetadata(
                name: result.value("name", row: row) ?? "", description: result.value("description", row: row),
                currentVersion: Int(result.value("current_version", row: row) ?? "") ?? 0,
                createdAt: result.value("created_at", row: row) ?? "", updatedAt: result.value("updated_at", row: row) ?? "",
                deletedAt: result.value("deleted_at", row: row))
        }
    }
}

/// One entry of a secret's history (never the value).
public struct SecretVersionInfo: Sendable, Equatable {
    /// 1, 2, ...
    public var version: Int
    /// When it was written.
    public var createdAt: String
    /// Who wrote it (`service_role`, `admin:<id>`, ...).
    public var createdBy: String
    /// The data key that encrypts it.
    public var dataKeyID: String

    /// The JSON object the HTTP API returns.
    public var json: [String: Any] {
        ["version": version, "created_at": createdAt, "created_by": createdBy, "data_key_id": dataKeyID]
    }
}
