import Foundation
import Logging
import MeltyRedis
import MeltyTestServices
import Testing

@testable import Kernel

@Suite("Rate limits: Redis token buckets shared by kernels, in-process fallback", .serialized, .timeLimit(.minutes(3)))
struct RateLimitTests {
    @Test("the in-process bucket allows its burst, refills at its rate and says when to retry")
    func localBucket() {
        let buckets = LocalTokenBuckets()
        let bucket = TokenBucketConfig(rate: 2, burst: 3)
        let start = 1_000_000.0
        let decisions = (0..<4).map { _ in buckets.take(key: "k", bucket: bucket, now: start) }
        #expect(decisions.map(\.allowed) == [true, true, true, false])
        #expect(decisions[3].retryAfterSeconds == 1)
        #expect(buckets.take(key: "k", bucket: bucket, now: start + 0.5).allowed)
        #expect(!buckets.take(key: "k", bucket: bucket, now: start + 0.5).allowed)
        #expect(buckets.take(key: "other", bucket: bucket, now: start).allowed)
    }

    @Test("two limiters on one Redis share the bucket")
    func sharedThroughRedis() async throws {
        let url = try TestServices.redisURL()
        let first = RateLimiter(redis: try RedisClient(url: url), logger: Logger(label: "a"))
        let second = RateLimiter(redis: try RedisClient(url: url), logger: Logger(label: "b"))
        let key = "test:" + UUID().uuidString
        let bucket = TokenBucketConfig(rate: 0.01, burst: 4)
        var allowed = 0
        for index in 0..<10 {
            let decision = await (index % 2 == 0 ? first : second).take(key: key, bucket: bucket)
            if decision.allowed { allowed += 1 } else { #expect(decision.retryAfterSeconds >= 1) }
        }
        #expect(allowed == 4)
        #expect(!first.isUsingFallback && !second.isUsingFallback)
    }

    @Test("busy keys lease tokens from Redis in batches and remember refusals briefly; two leasing kernels never exceed the shared burst")
    func leasedTokens() async throws {
        let url = try TestServices.redisURL()
        let redis = try RedisClient(url: url)
        let first = RateLimiter(redis: redis, logger: Logger(label: "a"))
        let second = RateLimiter(redis: try RedisClient(url: url), logger: Logger(label: "b"))
        let key = "test:" + UUID().uuidString
        #expect(RateLimiter.leaseSize(TokenBucketConfig(rate: 0.5, burst: 100)) == 1, "small rates lease one token at a time")
        let busy = TokenBucketConfig(rate: 250, burst: 100)
        #expect(RateLimiter.leaseSize(busy) == 5)
        func scriptCalls() async throws -> Int {
            guard case .string(let info) = try await redis.command(["INFO", "commandstats"]) else { return 0 }
            return info.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("cmdstat_evalsha:") || $0.hasPrefix("cmdstat_eval:") }
                .compactMap { line in line.split(separator: "=").dropFirst().first.flatMap { Int($0.split(separator: ",")[0]) } }.reduce(0, +)
        }
        let callsBefore = try await scriptCalls()
        let started = Date()
        var allowed = 0
        for index in 0..<300 {
            if await (index % 2 == 0 ? first : second).take(key: key, bucket: busy).allowed { allowed += 1 }
        }
        let elapsed = Date().timeIntervalSince(started)
        let calls = try await scriptCalls() - callsBefore
        // Never more than the burst plus what refilled meanwhile, and the burst is not lost to leasing.
        let ceiling = 100 + Int((busy.rate * elapsed).rounded(.up)) + 1
        #expect(allowed >= 100 - 2 * 5 && allowed <= ceiling, "allowed \(allowed), ceiling \(ceiling)")
        // About one script call per lease and per remembered refusal, not one per request.
        #expect(calls > 0 && calls < 300 / 3, "\(calls) script calls for 300 requests (\(allowed) allowed)")
    }

    @Test("requests in flight when a lease runs out share one renewal instead of each draining the bucket")
    func concurrentRenewal() async throws {
        let limiter = RateLimiter(redis: try RedisClient(url: try TestServices.redisURL()), logger: Logger(label: "c"))
        let key = "test:" + UUID().uuidString
        // A lease is 20 tokens; 400 requests at once are well inside the burst of 1,000.
        let bucket = TokenBucketConfig(rate: 1000, burst: 1000)
        #expect(RateLimiter.leaseSize(bucket) == 20)
        var allowed = 0
        for _ in 0..<2 {
            allowed += await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<200 { group.addTask { await limiter.take(key: key, bucket: bucket).allowed } }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        // Had each waiting request taken a lease of its own, 400 × 20 tokens would have been asked for.
        #expect(allowed == 400, "\(allowed) of 400 requests allowed within the burst")
    }

    @Test("with Redis unreachable the limiter falls back in-process and says so in its log")
    func fallback() async throws {
        let log = CapturedLog()
        let limiter = RateLimiter(redis: try RedisClient(url: "unix:///nonexistent/redis.sock"), logger: Logger(label: "f") { _ in log.handler() })
        let bucket = TokenBucketConfig(rate: 0.01, burst: 2)
        let results = [await limiter.take(key: "x", bucket: bucket), await limiter.take(key: "x", bucket: bucket), await limiter.take(key: "x", bucket: bucket)]
        #expect(results.map(\.allowed) == [true, true, false])
        #expect(limiter.isUsingFallback)
        #expect(log.all.filter { $0.contains("in-process fallback") }.count == 1)
    }

    @Test("the gateway answers 429 with Retry-After after the burst, shared by two kernels on one Redis")
    func twoKernelsShareLimit() async throws {
        let portal = "limited" + String(UUID().uuidString.prefix(8)).lowercased()
        let toml = """
            [plugins.echo-c]
            path = "{ECHO_C}"
            [portals.\(portal)]
            plugins = ["echo-c"]
            rate_limit = { rate = 0.01, burst = 6 }
            """
        let first = try await TestKernel.start(toml)
        let second = try await TestKernel.start(toml, conninfo: first.conninfo, keysDirectory: first.kernel.config.keysDirectory)
        var statuses: [Int] = []
        var retryAfter: String?
        for index in 0..<10 {
            let kernel = index % 2 == 0 ? first : second
            let response = try await kernel.request("/p/\(portal)/echo-c/echo")
            statuses.append(response.status)
            if response.status == 429 {
                retryAfter = response.headers.first(name: "retry-after")
                #expect(HTTP.json(response.body)["code"] as? String == "rate_limited")
            }
        }
        #expect(statuses.filter { $0 == 200 }.count == 6, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count == 4)
        #expect(Int(retryAfter ?? "") ?? 0 >= 1)
        // Other routes of the same kernels are not limited by the portal's bucket.
        #expect(try await first.request("/v1/system/status").status == 200)
        await first.stop()
        await second.stop()
    }

    @Test("per-client limits apply to every route")
    func perClient() async throws {
        let kernel = try await TestKernel.start("[rate_limit]\nper_client = { rate = 0.01, burst = 3 }\n", redisURL: "unix:///nonexistent/redis.sock")
        var statuses: [Int] = []
        for _ in 0..<5 { statuses.append(try await kernel.request("/v1/system/status").status) }
        #expect(statuses == [200, 200, 200, 429, 429])
        await kernel.stop()
    }
}
