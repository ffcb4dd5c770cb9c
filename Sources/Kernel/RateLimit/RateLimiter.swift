import Foundation
import Logging
import MeltyRedis
import Metrics
import NIOConcurrencyHelpers

/// The outcome of taking one token.
public struct RateLimitDecision: Sendable, Equatable {
    /// Whether the request may proceed.
    public var allowed: Bool
    /// Seconds until a token is available again (for `Retry-After`), when refused.
    public var retryAfterSeconds: Int
}

/// Token buckets shared by every kernel on one Redis, with an in-process fallback.
///
/// The Redis script refills and takes tokens atomically using the Redis server's clock,
/// so two kernels draw from the same bucket. A kernel takes a small lease of tokens at a
/// time (about 2% of the rate, at most 5% of the burst; one for small buckets) and spends
/// it locally for up to 100 ms, so a busy key costs one Redis round trip per lease instead
/// of per request; leased tokens left unspent simply expire, which only ever errs strict. When Redis cannot be reached the limiter
/// says so once in the log, sets `meltybase_rate_limit_fallback` to 1, and limits per
/// process until Redis answers again.
public final class RateLimiter: Sendable {
    private let redis: RedisClient?
    private let local = LocalTokenBuckets()
    private let logger: Logger
    private let fallbackGauge = Gauge(label: "meltybase_rate_limit_fallback")
    private let refusals = Counter(label: "meltybase_rate_limited_total")
    private let usingFallback = NIOLockedValueBox(false)
    private let scriptSHA = NIOLockedValueBox<String?>(nil)
    private let leases = NIOLockedValueBox(LeaseTable())

    /// Tokens leased from Redis, or (remaining 0, `retryAfter` set) a refusal remembered
    /// until the bucket can have refilled one token (at most 100 ms).
    private struct Lease {
        var remaining: Int
        var expires: Double
        var retryAfter: Int = 0
    }

    /// Leases by key, and the requests waiting while one request per key renews its lease.
    private struct LeaseTable {
        var leases: [String: Lease] = [:]
        var renewing: [String: [CheckedContinuation<LeaseStep, Never>]] = [:]
        /// Until then Redis is not asked (it failed just before); 0 while it answers.
        var redisRetryAt: Double = 0

        /// Spends a token of a live lease, or repeats a live refusal; nil when the lease is
        /// missing, spent or expired.
        mutating func spend(_ key: String, now: Double) -> RateLimitDecision? {
            guard var lease = leases[key], lease.expires > now else { return nil }
            if lease.remaining == 0 { return lease.retryAfter > 0 ? RateLimitDecision(allowed: false, retryAfterSeconds: lease.retryAfter) : nil }
            lease.remaining -= 1
            leases[key] = lease
            return RateLimitDecision(allowed: true, retryAfterSeconds: 0)
        }
    }

    /// Tokens taken from Redis at once for `bucket`.
    static func leaseSize(_ bucket: TokenBucketConfig) -> Int {
        max(1, min(Int(Double(bucket.burst) / 20), Int(bucket.rate / 50)))
    }

    /// A limiter on `redis`, or in-process only when `redis` is nil.
    public init(redis: RedisClient?, logger: Logger) {
        self.redis = redis
        self.logger = logger
        fallbackGauge.record(redis == nil ? 1 : 0)
    }

    /// Whether the in-process fallback is in use right now.
    public var isUsingFallback: Bool { redis == nil || usingFallback.withLockedValue { $0 } }

    /// Takes one token from the bucket `key` (e.g. `client:127.0.0.1`).
    public func take(key: String, bucket: TokenBucketConfig) async -> RateLimitDecision {
        let decision: RateLimitDecision
        if let redis {
            decision = await takeLeased(redis, key: key, bucket: bucket)
        } else {
            decision = local.take(key: key, bucket: bucket)
        }
        if !decision.allowed { refusals.increment() }
        return decision
    }

    /// Takes one token when that needs no wait: from a live lease, or from the in-process
    /// buckets without Redis. Nil when a lease must be renewed (call ``take(key:bucket:)``).
    public func takeWithoutWaiting(key: String, bucket: TokenBucketConfig) -> RateLimitDecision? {
        let decision: RateLimitDecision
        if redis != nil {
            guard let spent = leases.withLockedValue({ $0.spend(key, now: Date().timeIntervalSince1970) }) else { return nil }
            decision = spent
        } else {
            decision = local.take(key: key, bucket: bucket)
        }
        if !decision.allowed { refusals.increment() }
        return decision
    }

    /// What a request does next about a key's lease.
    private enum LeaseStep {
        case decided(RateLimitDecision)
        /// This request renews the lease from Redis.
        case renew
        /// Another request renewed it meanwhile: look again.
        case lookAgain
        /// Redis failed a moment ago: use the in-process buckets without waiting for it.
        case fallback
    }

    /// Spends a leased token, or renews the lease: one request per key goes to Redis while
    /// the others wait for its answer (without that, every request in flight when a lease
    /// ran out took a lease of its own and drained the bucket many times over).
    private func takeLeased(_ redis: RedisClient, key: String, bucket: TokenBucketConfig) async -> RateLimitDecision {
        if let spent = leases.withLockedValue({ $0.spend(key, now: Date().timeIntervalSince1970) }) { return spent }
        while true {
            let step: LeaseStep = await withCheckedContinuation { continuation in
                let now = Date().timeIntervalSince1970
                let immediate = leases.withLockedValue { table -> LeaseStep? in
                    if let spent = table.spend(key, now: now) { return .decided(spent) }
                    if now < table.redisRetryAt { return .fallback }
                    if table.renewing[key] != nil {
                        table.renewing[key]!.append(continuation)
                        return nil
                    }
                    table.renewing[key] = []
                    return .renew
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
            switch step {
            case .decided(let decision): return decision
            case .lookAgain: continue
            case .fallback: return local.take(key: key, bucket: bucket)
            case .renew: return await renewLease(redis, key: key, bucket: bucket)
            }
        }
    }

    /// Takes a lease from Redis for `key`, records it, wakes the requests waiting for it, and
    /// returns this request's decision (the fallback's when Redis cannot be reached).
    private func renewLease(_ redis: RedisClient, key: String, bucket: TokenBucketConfig) async -> RateLimitDecision {
        let now = Date().timeIntervalSince1970
        let decision: RateLimitDecision
        var lease: Lease?
        do {
            let (granted, retry) = try await takeFromRedis(redis, key: key, bucket: bucket, count: Self.leaseSize(bucket))
            decision = RateLimitDecision(allowed: granted > 0, retryAfterSeconds: retry)
            lease =
                granted > 0
                ? Lease(remaining: granted - 1, expires: now + 0.1)
                : Lease(remaining: 0, expires: now + min(0.1, 1 / bucket.rate), retryAfter: max(1, retry))
            if usingFallback.withLockedValue({
                let was = $0
                $0 = false
                return was
            }) {
                logger.notice("rate limiting is shared through Redis again", metadata: ["redis": "\(RedisClient.redacted(redis.url))"])
                fallbackGauge.record(0)
            }
        } catch {
            if !usingFallback.withLockedValue({
                let was = $0
                $0 = true
                return was
            }) {
                logger.warning("Redis is unreachable; rate limits now apply per kernel process (in-process fallback)", metadata: ["error": "\(error)"])
                fallbackGauge.record(1)
            }
            decision = local.take(key: key, bucket: bucket)
        }
        let waiting = leases.withLockedValue { table -> [CheckedContinuation<LeaseStep, Never>] in
            // After a failure (no lease), requests use the in-process buckets for a second
            // before one asks Redis again.
            if lease == nil { table.redisRetryAt = Date().timeIntervalSince1970 + 1 }
            if let lease {
                if table.leases.count > 100_000 { table.leases.removeAll(keepingCapacity: true) }
                table.leases[key] = lease
            }
            return table.renewing.removeValue(forKey: key) ?? []
        }
        // Waiters spend the new lease, or (after a failure) fall back at once.
        for waiter in waiting { waiter.resume(returning: .lookAgain) }
        return decision
    }

    /// Takes up to `count` tokens; returns how many were granted and, when none, the wait.
    private func takeFromRedis(_ redis: RedisClient, key: String, bucket: TokenBucketConfig, count: Int) async throws -> (granted: Int, retry: Int) {
        let arguments = ["1", "meltybase:ratelimit:" + key, String(bucket.rate), String(bucket.burst), String(count)]
        var reply: RedisReply
        if let sha = scriptSHA.withLockedValue({ $0 }) {
            reply = try await redis.command(["EVALSHA", sha] + arguments)
            if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
                reply = try await redis.command(["EVAL", Self.script] + arguments)
            }
        } else {
            reply = try await redis.command(["EVAL", Self.script] + arguments)
            if case .string(let sha) = try await redis.command(["SCRIPT", "LOAD", Self.script]) {
                scriptSHA.withLockedValue { $0 = sha }
            }
        }
        guard case .array(let values) = reply, values.count == 2, let granted = values[0].integer, let retry = values[1].integer else {
            throw RedisError(message: "unexpected rate-limit script reply \(reply)")
        }
        return (Int(granted), Int(retry))
    }

    /// Atomic token bucket: refill by elapsed server time, take up to ARGV[3] tokens (as many
    /// whole ones as there are) or report the wait for one.
    static let script = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local rate = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
        local tokens = tonumber(state[1]) or burst
        local at = tonumber(state[2]) or now
        tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
        local want = tonumber(ARGV[3]) or 1
        local granted = math.min(want, math.floor(tokens))
        local retry = 0
        if granted >= 1 then
            tokens = tokens - granted
        else
            granted = 0
            retry = math.ceil((1 - tokens) / rate)
        end
        redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
        redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
        return {granted, retry}
        """
}

/// In-process token buckets, the fallback when Redis is unreachable.
final class LocalTokenBuckets: Sendable {
    private struct State {
        var tokens: Double
        var at: Double
    }
    private let buckets = NIOLockedValueBox<[String: State]>([:])

    func take(key: String, bucket: TokenBucketConfig, now: Double = Date().timeIntervalSince1970) -> RateLimitDecision {
        buckets.withLockedValue { buckets in
            var state = buckets[key] ?? State(tokens: Double(bucket.burst), at: now)
            state.tokens = min(Double(bucket.burst), state.tokens + max(0, now - state.at) * bucket.rate)
            state.at = now
            defer {
                buckets[key] = state
                if buckets.count > 100_000 { buckets.removeAll(keepingCapacity: true) }
            }
            if state.tokens >= 1 {
                state.tokens -= 1
                return RateLimitDecision(allowed: true, retryAfterSeconds: 0)
            }
            return RateLimitDecision(allowed: false, retryAfterSeconds: Int(((1 - state.tokens) / bucket.rate).rounded(.up)))
        }
    }
}
