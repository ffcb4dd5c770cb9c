import EdgeCore
import EdgeWorkers
import Foundation
import MeltyPluginSDK

/// `ANY /p/<portal>/functions/v1/<name>[/...]`: checks the caller, hands the request to the
/// function's warm pool with its body streamed in, and streams the response back.
struct FunctionInvocation {
    let functions: PortalFunctions

    /// Answers one invocation.
    func handle(_ request: PluginRequest) async -> PluginResponse {
        do {
            let (name, rest) = try Self.target(of: request.path)
            let live = try await functions.live(name)
            try Self.checkCaller(request, verifyJWT: live.manifest.verifyJWT, portal: functions.portal.name)
            return await invoke(request, name: name, rest: rest, live: live)
        } catch let refusal as EdgeRouteError {
            return refusal.response
        } catch let failure as WorkerStartError {
            return .error(
                status: 503, code: "worker_unavailable", message: "the function's workers cannot start: \(failure)",
                hint: "see its logs (meltybase functions logs) and redeploy a fixed version")
        } catch {
            return .error(status: 503, code: "edge_unavailable", message: "the function could not be reached: \(error)")
        }
    }

    /// `/v1/<name>[/rest]` → the function's name and the path it sees after its name.
    static func target(of path: String) throws -> (FunctionName, String) {
        let parts = path.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        // "", "v1", "<name>[/rest]"
        guard parts.count == 3, parts[1] == "v1", !parts[2].isEmpty else {
            throw EdgeRouteError(status: 404, code: "route_not_found", message: "functions are invoked at /functions/v1/<name>")
        }
        let remainder = parts[2]
        let slash = remainder.firstIndex(of: "/")
        let nameText = String(slash.map { remainder[..<$0] } ?? remainder)
        let rest = slash.map { String(remainder[$0...]) } ?? ""
        do {
            return (try FunctionName(nameText), rest)
        } catch {
            throw EdgeRouteError(status: 404, code: "function_not_found", message: "\"\(nameText.prefix(80))\" is not a function name: \(error.message)")
        }
    }

    /// The `apikey` must be a key of this portal when sent; with `verify_jwt` (the default)
    /// the caller must present a valid JWT of the portal (any role, as Supabase's gateway) or
    /// an admin token.
    static func checkCaller(_ request: PluginRequest, verifyJWT: Bool, portal: String) throws {
        let credential = request.credential
        if case .invalid = credential.kind, verifyJWT || request.header("apikey") != nil {
            throw EdgeRouteError(
                status: 401, code: "invalid_jwt", message: "the credential was refused: \(credential.reason ?? "it does not verify")",
                hint: "send a key or user token of portal \"\(portal)\"")
        }
        guard verifyJWT else { return }
        switch credential.kind {
        case .portal, .admin: return
        default:
            throw EdgeRouteError(
                status: 401, code: "missing_jwt", message: "this function requires a JWT (verify_jwt is on)",
                hint: "send Authorization: Bearer <anon key or user token>, or deploy it with \"verify_jwt\": false in function.json")
        }
    }

    private func invoke(_ request: PluginRequest, name: FunctionName, rest: String, live: PortalFunctions.Live) async -> PluginResponse {
        functions.runtime.host.count("edge_invocations", portal: functions.portal)
        let hostHeader = request.header("host").flatMap { $0.isEmpty ? nil : $0 } ?? "localhost"
        let query = request.query.isEmpty ? "" : "?" + request.query
        let url = "http://\(hostHeader)/\(name.value)\(rest)\(query)"
        let hasBody = !["GET", "HEAD"].contains(request.method) && request.header("content-length") != "0"
        // A declared length over the limit is refused before the function runs (one that
        // streams without a length is counted as the function reads it).
        if let declared = request.header("content-length").flatMap(Int.init), declared > live.limits.maxRequestBytes {
            let failure = EdgeFailure.requestTooLarge(name.value, live.limits)
            return failure.response
        }
        let body = BodyReader(stream: request.bodyStream, whole: request.body)
        // A small body of declared length is read first and pushed whole with the request
        // (as a proxy buffers it): the function then reads it without a round trip per chunk.
        var whole: [UInt8]?
        if hasBody, request.bodyStream == nil {
            // The kernel read it whole (ABI 1.9); a larger one is pulled from memory instead.
            if request.body.count <= Self.pushedBodyBytes { whole = request.body }
        } else if hasBody, request.header("transfer-encoding") == nil, let declared = request.header("content-length").flatMap(Int.init),
            declared > 0, declared <= Self.pushedBodyBytes
        {
            do {
                whole = try await body.collect(upTo: declared)
            } catch let refusal as EdgeRouteError {
                return refusal.response
            } catch PluginError.invalid(let reason) {
                return .error(status: 413, code: "body_too_large", message: reason)
            } catch {
                return .error(status: 499, code: "client_closed_request", message: "the client went away while sending the body")
            }
        }
        let invocation = InvocationRequest(
            requestID: request.requestID, method: request.method, url: url,
            headers: request.headers.map { ($0.name, $0.value) }, hasBody: hasBody, body: whole)
        let source: RequestBodySource = { try await body.next() }
        // The exchange runs in this task up to the head (a whole answer ends there); a
        // streamed body is sent by the kernel's writer, from the first chunk on.
        switch await live.pool.start(invocation, body: source) {
        case .whole(let status, let headers, let bytes):
            return PluginResponse(status: status, headers: Self.responseHeaders(headers), body: bytes)
        case .failed(let failure):
            return failure.response
        case .clientGone:
            return .error(status: 499, code: "client_closed_request", message: "the client went away")
        case .streaming(let status, let headers, let stream):
            return .streaming(status: status, headers: Self.responseHeaders(headers)) { writer in
                switch await stream.send(to: WriterSink(writer: writer)) {
                case .aborted(let failure): throw failure
                case .clientGone: throw PluginError.unavailable("the client went away")
                case .completed, .failed: return
                }
            }
        }
    }

    /// The function's headers the client gets (none about the worker's connection).
    static func responseHeaders(_ headers: [(String, String)]) -> [(name: String, value: String)] {
        headers.filter { !hopByHop.contains($0.0.lowercased()) }.map { (name: $0.0, value: $0.1) }
    }

    /// Bodies of a declared length up to this size are read before the function starts and
    /// pushed to its worker whole; larger ones, and bodies without a length, stream.
    static let pushedBodyBytes = 64 * 1024

    /// Headers about the worker's connection, not the client's.
    static let hopByHop: Set<String> = ["connection", "keep-alive", "transfer-encoding", "upgrade", "content-length"]
}

extension EdgeFailure {
    /// The JSON answer naming the failure (``EdgeFailure/json``, its status).
    var response: PluginResponse { PluginResponse(status: status, headers: [("content-type", "application/json")], body: json) }
}

/// A streamed response's body on its way to the kernel's writer.
struct WriterSink: ResponseSink {
    let writer: ResponseBodyWriter

    func head(status: Int, headers: [(String, String)]) async {}

    func write(_ chunk: [UInt8]) async -> Bool {
        do {
            try await writer.write(chunk)
            return true
        } catch {
            return false
        }
    }

    func end() async {}

    func abort(_ failure: EdgeFailure) async {}
}

/// The request body as the pool pulls it: the kernel's stream on the streaming prefix.
final class BodyReader: @unchecked Sendable {  // Sendable: the pool calls next() once at a time (one BODY_PULL after another).
    private var iterator: RequestBodyStream.AsyncIterator?
    private var whole: [UInt8]?

    init(stream: RequestBodyStream?, whole: [UInt8]) {
        iterator = stream?.makeAsyncIterator()
        self.whole = stream == nil && !whole.isEmpty ? whole : nil
    }

    /// The whole body, which the client declared to be `length` bytes (at most that many are
    /// kept: a body that runs longer is refused with 400).
    func collect(upTo length: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length)
        while let chunk = try await next() {
            guard chunk.count <= length - bytes.count else {
                throw EdgeRouteError(status: 400, code: "body_length_mismatch", message: "the request body is longer than its content-length of \(length) bytes")
            }
            bytes += chunk
        }
        return bytes
    }

    /// The next chunk, nil at the end.
    func next() async throws -> [UInt8]? {
        if var iterator {
            let chunk = try await iterator.next()
            self.iterator = iterator
            return chunk
        }
        defer { whole = nil }
        return whole
    }
}
