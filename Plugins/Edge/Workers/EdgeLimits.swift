import MeltyJSON

/// What one function version may use: CPU, memory and wall-clock time per request, body
/// sizes, and how many workers and requests its pool holds. Parsed once from `function.json`
/// (config defaults, then the function's overrides) and validated; nothing below reads raw JSON.
public struct EdgeLimits: Sendable, Equatable {
    /// CPU time a worker may use on its oldest request before it is replaced (it finishes what it runs).
    public var cpuSoftMilliseconds = 1000
    /// CPU time a worker may use on its oldest request before it is killed.
    public var cpuHardMilliseconds = 2000
    /// Resident memory of a worker, and V8's old-space limit.
    public var memoryMegabytes = 256
    /// Time a request may take, from its start to its response's end.
    public var wallClockSeconds = 150
    /// Largest request body.
    public var maxRequestBytes = 2 * 1024 * 1024
    /// Largest response body.
    public var maxResponseBytes = 10 * 1024 * 1024
    /// Requests one worker runs at once.
    public var maxConcurrentPerWorker = 16
    /// Workers of one function version.
    public var maxWorkers = 4
    /// Workers kept started while the version is deployed.
    public var warmWorkers = 1
    /// Requests waiting for a free worker before more are refused with `concurrency_limit`.
    public var maxQueued = 1000
    /// Seconds a pool stays idle before the workers a burst started beyond `warm_workers` stop.
    public var idleSeconds = 30

    /// The defaults.
    public init() {}

    /// One key of the JSON object: its name, range and where it lives in the struct.
    private struct Key: Sendable {
        let name: String
        let range: ClosedRange<Int>
        let path: WritableKeyPath<EdgeLimits, Int> & Sendable
        let unit: String
    }

    private static let keys: [Key] = [
        Key(name: "cpu_soft_ms", range: 10...600_000, path: \.cpuSoftMilliseconds, unit: "ms"),
        Key(name: "cpu_hard_ms", range: 10...600_000, path: \.cpuHardMilliseconds, unit: "ms"),
        // An idle worker holds about 12 MB of anonymous memory: below 32 MB nothing useful runs.
        Key(name: "memory_mb", range: 32...4096, path: \.memoryMegabytes, unit: "MB"),
        Key(name: "wall_clock_seconds", range: 1...3600, path: \.wallClockSeconds, unit: "s"),
        Key(name: "max_request_bytes", range: 0...1_073_741_824, path: \.maxRequestBytes, unit: "bytes"),
        Key(name: "max_response_bytes", range: 0...1_073_741_824, path: \.maxResponseBytes, unit: "bytes"),
        Key(name: "max_concurrent_requests", range: 1...1000, path: \.maxConcurrentPerWorker, unit: "requests"),
        Key(name: "max_workers", range: 1...64, path: \.maxWorkers, unit: "workers"),
        Key(name: "warm_workers", range: 0...64, path: \.warmWorkers, unit: "workers"),
        Key(name: "max_queued", range: 0...100_000, path: \.maxQueued, unit: "requests"),
        Key(name: "idle_seconds", range: 1...86_400, path: \.idleSeconds, unit: "s"),
    ]

    /// `base` with the members of `object` applied. Refuses unknown keys, non-integers and
    /// values out of range, naming the key and what it accepts.
    public static func parse(_ object: [String: JSONValue], over base: EdgeLimits = EdgeLimits()) throws(EdgeLimitsError) -> EdgeLimits {
        var limits = base
        for (name, value) in object.sorted(by: { $0.key < $1.key }) {
            guard let key = keys.first(where: { $0.name == name }) else {
                throw EdgeLimitsError(key: name, message: "unknown limit \"\(name)\"; known limits: \(keys.map(\.name).joined(separator: ", "))")
            }
            guard let number = value.intValue else {
                throw EdgeLimitsError(
                    key: name, message: "limit \"\(name)\" must be a whole number from \(key.range.lowerBound) to \(key.range.upperBound) \(key.unit), found \(value.kind)")
            }
            guard key.range.contains(number) else {
                throw EdgeLimitsError(
                    key: name, message: "limit \"\(name)\" must be from \(key.range.lowerBound) to \(key.range.upperBound) \(key.unit), found \(number)")
            }
            limits[keyPath: key.path] = number
        }
        guard limits.cpuSoftMilliseconds <= limits.cpuHardMilliseconds else {
            throw EdgeLimitsError(
                key: "cpu_soft_ms",
                message: "cpu_soft_ms (\(limits.cpuSoftMilliseconds) ms) must not exceed cpu_hard_ms (\(limits.cpuHardMilliseconds) ms)")
        }
        guard limits.warmWorkers <= limits.maxWorkers else {
            throw EdgeLimitsError(
                key: "warm_workers", message: "warm_workers (\(limits.warmWorkers)) must not exceed max_workers (\(limits.maxWorkers))")
        }
        return limits
    }

    /// The limits as the JSON object ``parse(_:over:)`` reads (every key).
    public var json: [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        for key in Self.keys { object[key.name] = JSONValue(self[keyPath: key.path]) }
        return object
    }
}

/// A limit in `function.json` or the config was refused: which key and why.
public struct EdgeLimitsError: Error, CustomStringConvertible, Equatable {
    /// The key at fault (`memory_mb`).
    public let key: String
    /// What is wrong and what is accepted.
    public let message: String

    /// The message.
    public var description: String { message }
}
