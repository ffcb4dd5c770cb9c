import Crypto
import Foundation
import MeltyEd25519
import MeltyRedis

/// Counts sign-in attempts in Redis, per account and per client address, and locks either
/// for ``lockSeconds`` once it has had too many failures within ``windowSeconds``.
///
/// Every kernel on one Redis shares the counts. Attempts are counted when they *start*
/// (``begin(account:address:)``), and a success gives the attempt back
/// (``recordSuccess(account:address:)``): so a burst of concurrent guesses cannot slip
/// past the limit while the first ones are still being checked. When Redis cannot be
/// reached the throttle fails closed: it throws ``IdentityError`` 503 `throttle_unavailable`
/// and no password is checked (`reliability.md`: "fail closed for login").
///
/// The same throttle, with scope `mfa`, limits TOTP and recovery-code guesses per admin.
public struct LoginThrottle: Sendable {
    /// Where counts live; `nil` means Redis is not configured, and every attempt is refused.
    let redis: RedisClient?
    /// What is being throttled, in the Redis keys (`login`, `mfa`).
    public var scope: String
    /// Failures per account within the window before the account locks.
    public var accountLimit = 5
    /// Failures per client address within the window before the address locks (higher:
    /// several people may share one address).
    public var addressLimit = 20
    /// The window failures are counted in.
    public var windowSeconds = 15 * 60
    /// How long a lock lasts.
    public var lockSeconds = 15 * 60

    /// A throttle on `redis` for `scope`.
    public init(redis: RedisClient?, scope: String) {
        self.redis = redis
        self.scope = scope
    }

    /// Whether an attempt may go ahead.
    public enum Decision: Sendable, Equatable {
        case proceed
        /// Locked: the account (or address) may try again after this many seconds.
        case locked(retryAfterSeconds: Int, account: Bool)
    }

    /// Counts one attempt for `account` from `address`; refuses it while either is locked.
    public func begin(account: String, address: String) async throws -> Decision {
        let reply = try await run(Self.beginScript, account: account, address: address)
        guard case .array(let values) = reply, values.count == 3, let locked = values[0].integer,
            let milliseconds = values[1].integer, let onAccount = values[2].integer
        else {
            throw Self.unavailable("unexpected reply \(reply)")
        }
        if locked == 0 { return .proceed }
        return .locked(retryAfterSeconds: max(1, Int((milliseconds + 999) / 1000)), account: onAccount == 1)
    }

    /// Records that the attempt begun for `account` failed: at the limit, the lock starts now.
    public func recordFailure(account: String, address: String) async throws {
        _ = try await run(Self.failureScript, account: account, address: address)
    }

    /// Records that the attempt succeeded: the account's count restarts, the address gets
    /// its attempt back.
    public func recordSuccess(account: String, address: String) async throws {
        _ = try await run(Self.successScript, account: account, address: address)
    }

    private func run(_ script: String, account: String, address: String) async throws -> RedisReply {
        guard let redis else { throw Self.unavailable("Redis is not configured") }
        let prefix = "meltybase:throttle:\(scope):"
        // Hashed so that keys stay short and no email address sits in Redis in clear.
        let accountKey = Self.digest(account)
        let keys = [
            prefix + "account:" + accountKey, prefix + "account-lock:" + accountKey,
            prefix + "address:" + address, prefix + "address-lock:" + address,
        ]
        let arguments =
            ["EVAL", script, "4"] + keys
            + [String(accountLimit), String(addressLimit), String(windowSeconds * 1000), String(lockSeconds * 1000)]
        let reply: RedisReply
        do {
            reply = try await redis.command(arguments)
        } catch {
            throw Self.unavailable("\(error)")
        }
        if case .error(let message) = reply { throw Self.unavailable(message) }
        return reply
    }

    static func unavailable(_ reason: String) -> IdentityError {
        IdentityError(
            status: 503, code: "throttle_unavailable",
            message: "sign-in is unavailable: the attempt counter in Redis cannot be reached (\(reason)), and sign-in does not proceed without it",
            hint: "check that Redis is running ([redis] url or MELTYBASE_REDIS_URL), then retry", retryAfterSeconds: 5)
    }

    static func digest(_ text: String) -> String {
        ByteEncoding.hex(Array(SHA256.hash(data: Array(text.utf8)).prefix(16)))
    }

    // KEYS: account count, account lock, address count, address lock.
    // ARGV: account limit, address limit, window ms, lock ms.

    /// Refuses while locked; otherwise counts the attempt, and locks (refusing it) once the
    /// count passes a limit: that only happens when attempts run concurrently.
    static let beginScript = """
        local accountLock = redis.call('PTTL', KEYS[2])
        local addressLock = redis.call('PTTL', KEYS[4])
        if accountLock > 0 or addressLock > 0 then
            if accountLock >= addressLock then return {1, accountLock, 1} end
            return {1, addressLock, 0}
        end
        local account = redis.call('INCR', KEYS[1])
        if account == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
        local address = redis.call('INCR', KEYS[3])
        if address == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
        if account > tonumber(ARGV[1]) then
            redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
            redis.call('DECR', KEYS[3])
            return {1, tonumber(ARGV[4]), 1}
        end
        if address > tonumber(ARGV[2]) then
            redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
            redis.call('DECR', KEYS[1])
            return {1, tonumber(ARGV[4]), 0}
        end
        return {0, 0, 0}
        """

    /// After a failure: a count at its limit starts the lock (and the count starts over).
    static let failureScript = """
        if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
            redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
            redis.call('DEL', KEYS[1])
        end
        if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[2]) then
            redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
            redis.call('DEL', KEYS[3])
        end
        return 1
        """

    /// After a success: the account's failures are forgiven; the address gets its attempt back.
    static let successScript = """
        redis.call('DEL', KEYS[1])
        if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
        return 1
        """
}
