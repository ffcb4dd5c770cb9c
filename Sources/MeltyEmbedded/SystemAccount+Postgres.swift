import Foundation
import Logging
import MeltyProcess

extension SystemAccount {
    /// `postgres` (created by Debian's package) or a `meltybase` system account, created if needed.
    static func unprivilegedForPostgres(logger: Logger) throws -> SystemAccount {
        for name in ["postgres", "meltybase"] {
            if let account = lookup(name) { return account }
        }
        logger.notice("creating the unprivileged system account 'meltybase' to run the embedded Postgres (Postgres refuses to run as root)")
        do {
            return try ensure("meltybase", purpose: "to run the embedded Postgres")
        } catch {
            throw EmbeddedServiceError(error.message, hint: "create an unprivileged account named meltybase or postgres, or run MeltyBase as a normal user")
        }
    }
}
