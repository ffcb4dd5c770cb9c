import Foundation
import MeltyJSON
import MeltyPostgres

/// What the Vault tells about a secret without its value.
public struct SecretMetadata: Sendable, Equatable, Encodable {
    /// Name within the portal.
    public var name: String
    /// Free text from the creator.
    @NullWhenAbsent public var description: String?
    /// Version a plain read returns.
    public var currentVersion: Int
    /// ISO 8601 timestamps.
    public var createdAt: String
    /// Time of the last version or change.
    public var updatedAt: String
    /// Set once soft-deleted.
    @NullWhenAbsent public var deletedAt: String?

    /// The JSON object the HTTP API and `vault.v1` return: `{name, description, version,
    /// created_at, updated_at, deleted_at}`, absent values as `null`.
    private enum CodingKeys: String, CodingKey {
        case name, description
        case currentVersion = "version"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case deletedAt = "deleted_at"
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
public struct SecretVersionInfo: Sendable, Equatable, Encodable {
    /// 1, 2, ...
    public var version: Int
    /// When it was written.
    public var createdAt: String
    /// Who wrote it (`service_role`, `admin:<id>`, ...).
    public var createdBy: String
    /// The data key that encrypts it.
    public var dataKeyID: String

    /// The JSON object the HTTP API returns: `{version, created_at, created_by, data_key_id}`.
    private enum CodingKeys: String, CodingKey {
        case version
        case createdAt = "created_at"
        case createdBy = "created_by"
        case dataKeyID = "data_key_id"
    }
}
