import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import Synchronization

/// The first stage of every request: request id, rate limit per client, JSON errors,
/// metrics and a log line for server errors.
struct GatewayMiddleware: RouterMiddleware {
    typealias Context = KernelRequestContext
    let rateLimiter: RateLimiter
    let perClient: TokenBucketConfig?
    /// This kernel's `body_limit_bytes`, handed to every request's context.
    var bodyLimit = KernelRequestContext.defaultBodyLimit
    /// This kernel's request counters.
    var metrics = RequestMetrics()
    /// This kernel's request id source.
    var requestIDs = RequestIDs()
    /// `[kernel] trusted_proxies`.
    var trustedProxies = TrustedProxies.none

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.bodyLimit = bodyLimit
        context.requestID = Self.requestID(from: request.headers, ids: requestIDs)
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
        if !trustedProxies.isEmpty, let peer = context.remoteAddress?.ipAddress {
            let client = trustedProxies.client(peer: peer, forwardedFor: request.headers[values: Self.forwardedForField])
            if client != peer { context.forwardedClient = client }
        }
        let started = DispatchTime.now().uptimeNanoseconds
        var response: Response
        do {
            if let bucket = perClient {
                let decision = await rateLimiter.take(key: "client:" + context.clientAddress, bucket: bucket)
                if !decision.allowed { throw Self.tooManyRequests(decision, scope: "your address") }
            }
            try Self.refuseNUL(in: request.uri.string)
            response = try await next(request, context)
        } catch {
            response = Self.errorResponse(for: error, request: request, context: context)
        }
        response.headers[Self.requestIDField] = context.requestID
        let status = response.status.code
        metrics.record(status: status, nanoseconds: Int64(DispatchTime.now().uptimeNanoseconds - started))
        if status >= 500 {
            context.logger.error("request failed", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(status)"])
        }
        return response
    }

    /// `x-request-id`, in requests and responses.
    static let requestIDField = HTTPField.Name("x-request-id")!
    /// `x-forwarded-for`, believed from trusted proxies only.
    static let forwardedForField = HTTPField.Name("x-forwarded-for")!

    /// Refuses a URL holding a NUL byte, raw or as `%00`: no route or query value may carry
    /// one to Postgres, where libpq would cut the text at it.
    static func refuseNUL(in uri: String) throws {
        // One pass over the bytes: Foundation's `contains("%00")` cost 6,000 instructions a request.
        var found = false
        var last: (UInt8, UInt8) = (0, 0)
        for byte in uri.utf8 {
            if byte == 0 || (byte == UInt8(ascii: "0") && last == (UInt8(ascii: "%"), UInt8(ascii: "0"))) {
                found = true
                break
            }
            last = (last.1, byte)
        }
        guard found else { return }
        throw GatewayError(
            status: 400, code: "nul_byte", message: "the URL holds a NUL byte (%00), which no route accepts",
            hint: "remove the NUL character from the path and query")
    }

    /// A 429 with `Retry-After` naming what was limited.
    static func tooManyRequests(_ decision: RateLimitDecision, scope: String) -> GatewayError {
        GatewayError(
            status: 429, code: "rate_limited", message: "too many requests from \(scope)",
            hint: "retry after \(decision.retryAfterSeconds) s",
            headers: [("Retry-After", String(max(1, decision.retryAfterSeconds)))])
    }

    /// Any error as a JSON `{code, message, hint}` response; never a bare 500 page.
    static func errorResponse(for error: any Error, request: Request, context: Context) -> Response {
        let gatewayError: GatewayError
        switch error {
        case let error as GatewayError:
            gatewayError = error
        case let error as HTTPError:
            let status = Int(error.status.code)
            let code = status == 404 ? "route_not_found" : status == 413 ? "body_too_large" : "http_\(status)"
            var message = error.body ?? error.status.reasonPhrase
            if status == 404 { message = "no route for \(request.method) \(request.uri.path)" }
            if status == 413 { message = "request body is larger than the limit of \(context.bodyLimit) bytes" }
            gatewayError = GatewayError(
                status: status, code: code, message: message,
                hint: status == 404 ? "portal routes look like /p/<portal>/<plugin prefix>/..." : status == 413 ? "raise [kernel] body_limit_bytes or send less" : nil)
        case is NIOTooManyBytesError:
            gatewayError = GatewayError(
                status: 413, code: "body_too_large", message: "request body is larger than the limit of \(context.bodyLimit) bytes",
                hint: "raise [kernel] body_limit_bytes or send less")
        case let error as PostgresError where error.sqlState == PostgresError.nulByteState:
            gatewayError = GatewayError(
                status: 400, code: "nul_byte", message: "a value holds a NUL byte (\\u0000), which cannot be stored",
                hint: "remove the NUL character from the value")
        case let error as PostgresError:
            gatewayError = GatewayError(
                status: 503, code: "database_unavailable", message: "the system database is unavailable: \(error.message)",
                hint: "retry shortly", headers: [("Retry-After", "1")])
        case let error as PostgresPoolError:
            gatewayError = GatewayError(
                status: 503, code: "database_unavailable", message: "the system database is unavailable: \(error)",
                hint: "retry shortly", headers: [("Retry-After", "\(error.retryAfterSeconds)")])
        default:
            context.logger.error("unhandled error", metadata: ["error": "\(error)"])
            gatewayError = GatewayError(status: 500, code: "internal_error", message: "internal error", hint: "see the kernel log for request id \(context.requestID)")
        }
        return (try? gatewayError.response(from: request, context: context)) ?? Response(status: .internalServerError)
    }

    /// A sane `x-request-id` from the client, else a new one from `ids`.
    static func requestID(from headers: HTTPFields, ids: RequestIDs) -> String {
        if let given = headers[requestIDField], given.count <= 128,
            given.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.:".unicodeScalars.contains($0) })
        {
            return given
        }
        return ids.next()
    }
}

/// Request counters and the latency histogram, created once per kernel (metric lookups
/// cost a lock and allocations, which the hot path should not pay per request).
final class RequestMetrics: Sendable {
    private let common: [Int: Counter]
    private let duration = Timer(label: "meltybase_http_request_duration_seconds")

    init() {
        var counters: [Int: Counter] = [:]
        for status in [200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 409, 410, 413, 422, 429, 500, 502, 503, 504] {
            counters[status] = Counter(label: "meltybase_http_requests_total", dimensions: [("status", String(status))])
        }
        common = counters
    }

    func record(status: Int, nanoseconds: Int64) {
        (common[status] ?? Counter(label: "meltybase_http_requests_total", dimensions: [("status", String(status))])).increment()
        duration.recordNanoseconds(nanoseconds)
    }
}

/// Request ids: a random per-kernel prefix and a counter, cheaper than a UUID per request
/// (`3f9c2a71-00000000002a`).
final class RequestIDs: Sendable {
    private let prefix = Array(String(UInt32.random(in: .min ... .max), radix: 16).utf8)
    private let counter = Atomic<UInt64>(0)
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// The prefix, "-", and the counter in at least 12 lower-case hex digits, written in
    /// place (the concatenations before cost 3,400 instructions a request).
    func next() -> String {
        let value = counter.wrappingAdd(1, ordering: .relaxed).newValue
        let digits = max(12, (64 - value.leadingZeroBitCount + 3) / 4)
        return String(unsafeUninitializedCapacity: prefix.count + 1 + digits) { buffer in
            var index = 0
            for byte in prefix {
                buffer[index] = byte
                index += 1
            }
            buffer[index] = UInt8(ascii: "-")
            var rest = value
            var position = index + digits
            while position > index {
                buffer[position] = Self.hexDigits[Int(rest & 0xF)]
                rest >>= 4
                position -= 1
            }
            return index + 1 + digits
        }
    }
}
