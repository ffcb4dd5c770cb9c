import MeltyJSON

/// Why an invocation did not produce the function's response: a limit, the function's own
/// error, or a worker that died. Carries the HTTP status the caller answers with and a
/// message that names the limit, its value and what to change.
public struct EdgeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as a stable code.
    public enum Code: String, Sendable, Equatable {
        /// The worker used more CPU than `cpu_hard_ms` on the request (546).
        case cpuTimeLimit = "cpu_time_limit"
        /// The worker used more memory than `memory_mb` (547).
        case memoryLimit = "memory_limit"
        /// The request took longer than `wall_clock_seconds` (504).
        case wallClockLimit = "wall_clock_limit"
        /// The request body is larger than `max_request_bytes` (413).
        case requestTooLarge = "request_too_large"
        /// The response body is larger than `max_response_bytes` (502).
        case responseTooLarge = "response_too_large"
        /// Every worker is busy and the queue is full (503).
        case concurrencyLimit = "concurrency_limit"
        /// The function threw, or returned something that is not a Response (500).
        case functionError = "function_error"
        /// The worker died while running the request (502).
        case workerCrashed = "worker_crashed"
        /// No worker could be started, or the pool is stopped (503).
        case workerUnavailable = "worker_unavailable"

        /// The HTTP status answered for this code.
        public var status: Int {
            switch self {
            case .cpuTimeLimit: 546
            case .memoryLimit: 547
            case .wallClockLimit: 504
            case .requestTooLarge: 413
            case .responseTooLarge: 502
            case .concurrencyLimit: 503
            case .functionError: 500
            case .workerCrashed: 502
            case .workerUnavailable: 503
            }
        }
    }

    /// The code.
    public let code: Code
    /// What happened, naming the limit and its value.
    public let message: String
    /// What to do about it.
    public let hint: String
    /// The function's stack, for `function_error`.
    public let stack: String?

    /// A failure.
    public init(_ code: Code, message: String, hint: String, stack: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
        self.stack = stack
    }

    /// The HTTP status.
    public var status: Int { code.status }

    /// `message; hint`.
    public var description: String { hint.isEmpty ? message : "\(message); \(hint)" }

    /// The body of the error response: `{"code","message","hint"}` (and `stack` when there is one).
    public var json: [UInt8] {
        var object: [String: JSONValue] = ["code": .string(code.rawValue), "message": .string(message), "hint": .string(hint)]
        if let stack { object["stack"] = .string(stack) }
        return (try? JSONValue.serialize(JSONValue.object(object))) ?? Array(#"{"code":"function_error"}"#.utf8)
    }

    static func cpu(_ function: String, _ limits: EdgeLimits) -> EdgeFailure {
        EdgeFailure(
            .cpuTimeLimit, message: "function \"\(function)\" used more than \(limits.cpuHardMilliseconds) ms of CPU time on this request",
            hint: "raise cpu_hard_ms in its function.json or make it cheaper")
    }

    static func memory(_ function: String, _ limits: EdgeLimits) -> EdgeFailure {
        EdgeFailure(
            .memoryLimit, message: "function \"\(function)\" used more than \(limits.memoryMegabytes) MB of memory",
            hint: "raise memory_mb in its function.json or hold less data at once")
    }

    static func wallClock(_ function: String, _ limits: EdgeLimits) -> EdgeFailure {
        EdgeFailure(
            .wallClockLimit, message: "function \"\(function)\" did not finish its response within \(limits.wallClockSeconds) s",
            hint: "raise wall_clock_seconds in its function.json or answer sooner (a promise that never settles ends here)")
    }

    /// The request body is over `max_request_bytes` (413).
    public static func requestTooLarge(_ function: String, _ limits: EdgeLimits) -> EdgeFailure {
        EdgeFailure(
            .requestTooLarge, message: "the request body is larger than \(limits.maxRequestBytes) bytes, the limit of function \"\(function)\"",
            hint: "send a smaller body or raise max_request_bytes in its function.json")
    }

    static func responseTooLarge(_ function: String, _ limits: EdgeLimits) -> EdgeFailure {
        EdgeFailure(
            .responseTooLarge, message: "function \"\(function)\" answered more than \(limits.maxResponseBytes) bytes",
            hint: "raise max_response_bytes in its function.json or send less")
    }

    static func concurrency(_ function: String, _ limits: EdgeLimits) -> EdgeFailure {
        EdgeFailure(
            .concurrencyLimit,
            message:
                "function \"\(function)\" is busy: \(limits.maxWorkers) workers × \(limits.maxConcurrentPerWorker) requests run and \(limits.maxQueued) wait",
            hint: "retry later, or raise max_workers, max_concurrent_requests or max_queued in its function.json")
    }

    static func crashed(_ function: String, _ detail: String) -> EdgeFailure {
        EdgeFailure(
            .workerCrashed, message: "the worker of function \"\(function)\" died while running this request\(detail.isEmpty ? "" : ": \(detail)")",
            hint: "retry; if it repeats, read the function's logs")
    }

    static func unavailable(_ function: String, _ detail: String) -> EdgeFailure {
        EdgeFailure(
            .workerUnavailable, message: "no worker of function \"\(function)\" is available: \(detail)",
            hint: "retry later; if it repeats, redeploy the function and read its logs")
    }
}

/// A worker did not become ready: its module threw, exports no handler, or the process died
/// or hung before READY. `location` is `file:///...:line:col` when the runner knows it.
public struct WorkerStartError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong (the runner's message, or the process's end and its stderr tail).
    public let message: String
    /// Where in the function's code, when known.
    public let location: String?

    /// A start error.
    public init(message: String, location: String? = nil) {
        self.message = message
        self.location = location
    }

    /// The message with its location.
    public var description: String { location.map { "\(message) (at \($0))" } ?? message }
}
