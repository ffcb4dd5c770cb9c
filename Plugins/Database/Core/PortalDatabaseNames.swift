import Foundation
import MeltyPostgres

/// Where a portal's data lives: its database and owner role, and how to reach them from the
/// kernel's conninfo. Shared by the Database plugin and `meltybase migrate`.
public enum PortalDatabaseNames {
    /// Postgres identifiers are at most 63 bytes: long portal names keep a hash suffix.
    public static func name(_ prefix: String, _ portal: String) -> String {
        let full = prefix + portal
        if full.utf8.count <= 63 { return full }
        var hash: UInt64 = 1469598103934665603
        for byte in portal.utf8 { hash = (hash ^ UInt64(byte)) &* 1099511628211 }
        return prefix + String(portal.prefix(40)) + "_" + String(hash, radix: 16)
    }

    /// The portal's database (`mb_<portal>`).
    public static func database(_ portal: String) -> String { name("mb_", portal) }
    /// The role that owns the portal's schema objects (`mb_owner_<portal>`); the SQL console and migrations run as it.
    public static func owner(_ portal: String) -> String { name("mb_owner_", portal) }

    /// Conninfo of the portal database as `user` (default: the kernel's role).
    public static func conninfo(_ system: String, portal: String, user: String? = nil) -> String {
        var overrides = ["dbname": database(portal), "application_name": "meltybase-database"]
        if let user { overrides["user"] = user }
        return Conninfo.derive(system, overrides: overrides)
    }
}
