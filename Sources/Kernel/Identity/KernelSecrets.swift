import CSodium
import Foundation
import MeltyEd25519

/// Named random secrets shared by every kernel on one system database, kept in
/// `meltybase.kernel_secrets (name, value)` as hex. Generated once, on first use, by
/// whichever kernel gets there first; the others read the winner's value.
///
/// Anyone who can read that table can read these secrets (see `docs/admin-identity.md`).
/// Values are never logged.
public enum KernelSecrets {
    /// The HS256 key that signs admin access tokens.
    public static let adminTokenSigningKey = "admin_jwt_hs256"

    /// The secret `name`, creating 32 random bytes for it if it does not exist yet.
    public static func loadOrCreate(_ name: String, on connection: PostgresConnection) async throws -> [UInt8] {
        _ = Ed25519.initialized
        var fresh = [UInt8](repeating: 0, count: 32)
        randombytes_buf(&fresh, fresh.count)
        defer { Ed25519.wipe(&fresh) }
        let rows = try await connection.query(
            """
            WITH inserted AS (
                INSERT INTO meltybase.kernel_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value)
            SELECT value FROM inserted UNION ALL SELECT value FROM meltybase.kernel_secrets WHERE name = $1
            """, [name, ByteEncoding.hex(fresh)])
        guard let text = rows.value("value"), let value = ByteEncoding.fromHex(text), value.count >= 32 else {
            throw IdentityError.internalFailure("meltybase.kernel_secrets row \"\(name)\" does not hold at least 32 bytes of hex")
        }
        return value
    }
}
