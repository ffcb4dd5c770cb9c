import Foundation

/// One HTTP request for a function, as the kernel received it.
public struct InvocationRequest: Sendable {
    /// The kernel's request id (logs of the request carry it).
    public var requestID: String
    /// The HTTP method.
    public var method: String
    /// The URL the function sees (`http://host/<function>/<subpath>?query`).
    public var url: String
    /// The headers, in order.
    public var headers: [(String, String)]
    /// Whether there is a body (false for GET, HEAD and empty bodies).
    public var hasBody: Bool
    /// The whole body, when it was read before the invocation (a small body of declared
    /// length): pushed to the worker with the REQUEST, so the function reads it without a
    /// round trip per chunk. Nil: the body source is pulled as the function reads.
    public var body: [UInt8]?

    /// A request.
    public init(requestID: String, method: String, url: String, headers: [(String, String)] = [], hasBody: Bool = false, body: [UInt8]? = nil) {
        self.requestID = requestID
        self.method = method
        self.url = url
        self.headers = headers
        self.hasBody = hasBody || body != nil
        self.body = body
    }
}

/// The request body, one chunk per call, nil at its end; called only when the function reads
/// its body (once per BODY_PULL), never concurrently. A throw means the client is gone.
public typealias RequestBodySource = @Sendable () async throws -> [UInt8]?

/// Where a function's response goes (the kernel's HTTP connection). Called from one task,
/// in order: `head`, then `write`s, then `end`; or `abort` once the head was sent and the
/// response cannot complete. Nothing is called when the invocation fails before its head
/// (the outcome carries the failure to answer instead).
public protocol ResponseSink: Sendable {
    /// The status and headers.
    func head(status: Int, headers: [(String, String)]) async
    /// A chunk of body; false when the client is gone (the function is cancelled).
    func write(_ chunk: [UInt8]) async -> Bool
    /// The response is complete.
    func end() async
    /// The response cannot complete (a limit or a crash after the head): end the connection abruptly.
    func abort(_ failure: EdgeFailure) async
    /// A whole response at once (it arrived complete): instead of `head`, `write`s and `end`.
    func whole(status: Int, headers: [(String, String)], body: [UInt8]) async
}

extension ResponseSink {
    /// `head`, one `write` and `end`.
    public func whole(status: Int, headers: [(String, String)], body: [UInt8]) async {
        await head(status: status, headers: headers)
        if !body.isEmpty { _ = await write(body) }
        await end()
    }
}

/// How an invocation went up to its response head (``FunctionPool/start(_:body:)``).
public enum InvocationStart: Sendable {
    /// The response came whole: answer it.
    case whole(status: Int, headers: [(String, String)], body: [UInt8])
    /// A streamed response: send the head, then the body with the stream's `send(to:)`.
    case streaming(status: Int, headers: [(String, String)], StreamingResponse)
    /// Nothing was sent: answer `failure.status` with `failure.json`.
    case failed(EdgeFailure)
    /// The client went away.
    case clientGone
}

/// How an invocation ended.
public enum InvocationOutcome: Sendable, Equatable {
    /// The response was sent whole: its status and body size.
    case completed(status: Int, bodyBytes: Int)
    /// Nothing was sent: answer `failure.status` with `failure.json`.
    case failed(EdgeFailure)
    /// The head was sent, then the response failed; the sink got `abort`.
    case aborted(EdgeFailure)
    /// The client went away (task cancelled, body source threw, or the sink refused a chunk).
    case clientGone
}

/// One line a function logged (console.*, its stdout/stderr, uncaught errors), or one the
/// pool wrote about it (a limit or a crash, level "error").
public struct FunctionLogLine: Sendable, Equatable {
    /// The function's name.
    public var function: String
    /// The kernel id of the request it was running for; "" outside any request.
    public var requestID: String
    /// `debug`, `info`, `log`, `warn` or `error`.
    public var level: String
    /// The text.
    public var message: String
    /// When the host received it.
    public var at: Date

    /// A line.
    public init(function: String, requestID: String, level: String, message: String, at: Date = Date()) {
        self.function = function
        self.requestID = requestID
        self.level = level
        self.message = message
        self.at = at
    }
}

/// A pool's counters.
public struct FunctionPoolStats: Sendable, Equatable {
    /// Worker processes alive (starting, serving or retiring).
    public var workers: Int
    /// Requests running in a worker.
    public var inFlight: Int
    /// Requests waiting for a free worker.
    public var queued: Int
    /// Workers that left the pool without being asked (crash, limit, recycle) and were replaced.
    public var restarts: Int
    /// Invocations since the pool started.
    public var invocations: Int
}
