import Foundation
import MeltyABIBytes
import MeltyJSON
import MeltyPluginABI
import Synchronization

/// What the kernel offers a Swift plugin: logs, audit, metrics, outbound HTTP and services.
///
/// Available after `start`; every method may be called from any task or thread.
public struct PluginHostServices: Sendable {
    private let apiPointer: HostPointer<UnsafePointer<mb_host_api>>
    private let pluginPointer: HostPointer<OpaquePointer?>
    /// The kernel's immortal host table.
    var api: UnsafePointer<mb_host_api> { apiPointer.pointer }
    /// The kernel's immortal handle of this plugin.
    var plugin: OpaquePointer? { pluginPointer.pointer }

    init(api: UnsafePointer<mb_host_api>, plugin: OpaquePointer?) {
        apiPointer = HostPointer(api)
        pluginPointer = HostPointer(plugin)
    }

    /// The host function at `keyPath`, added to the host table in ABI 1.`minor`, or
    /// ``PluginError/unsupported(_:)`` ("secret_seal needs ABI 1.2, the host has 1.1") when
    /// the kernel running the plugin is older: its table (`struct_size`) ends before it, or
    /// the entry is NULL. A plugin built with this SDK runs on every 1.x host and learns per
    /// call what that host lacks; the function pointer is read only once it is known to lie
    /// inside the host's table.
    func function<Function>(_ keyPath: KeyPath<mb_host_api, Function?>, _ name: String, since minor: UInt32) throws -> Function {
        let table = UnsafeRawPointer(api)
        let size = table.load(as: Int.self)  // struct_size, the first field of every version
        if let offset = MemoryLayout<mb_host_api>.offset(of: keyPath), offset + MemoryLayout<Function?>.size <= size,
            let function = table.load(fromByteOffset: offset, as: Function?.self)
        {
            return function
        }
        throw PluginError.unsupported("\(name) needs ABI \(MB_ABI_MAJOR).\(minor), the host has \(api.pointee.abi_major).\(api.pointee.abi_minor)")
    }

    /// Why the SDK cannot use the host table at `api` at all (nil when it can): another
    /// major version, or a table smaller than ABI 1.0's. Any 1.x host is accepted; what a
    /// 1.x host lacks is reported per call (``function(_:_:since:)``).
    static func refusal(of api: UnsafePointer<mb_host_api>) -> String? {
        let size = UnsafeRawPointer(api).load(as: Int.self)
        let minimum = MemoryLayout<mb_host_api>.offset(of: \mb_host_api.portal_name)! + MemoryLayout<UnsafeRawPointer>.size
        guard size >= minimum else {
            return "host table struct_size is \(size), smaller than ABI 1.0's \(minimum)"
        }
        guard api.pointee.abi_major == UInt32(MB_ABI_MAJOR) else {
            return "host ABI \(api.pointee.abi_major).\(api.pointee.abi_minor) is not this plugin's major version \(MB_ABI_MAJOR) (built against \(MB_ABI_MAJOR).\(MB_ABI_MINOR))"
        }
        return nil
    }

    /// Log levels of the kernel logger.
    public enum LogLevel: UInt32, Sendable { case trace, debug, info, notice, warning, error, critical }

    /// Writes one log line tagged with the plugin (and the portal, when given).
    public func log(_ level: LogLevel, _ message: String, portal: Portal? = nil) {
        var text = message
        text.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) {
                api.pointee.log(plugin, portal?.handle, mb_log_level(rawValue: level.rawValue), $0.baseAddress, $0.count)
            }
        }
    }

    /// Adds `delta` to `meltybase_plugin_<name>_total{plugin, portal}`.
    public func count(_ name: String, by delta: Int64 = 1, portal: Portal? = nil) {
        var text = name
        text.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { api.pointee.counter_add(plugin, portal?.handle, $0.baseAddress, $0.count, delta) }
        }
    }

    /// Records that `member` (a user id) was active this month in the portal's set `set`
    /// (`auth_users`): the Hub counts distinct members per month as `active_<set>` (ABI 1.8
    /// `usage_mark`). Does nothing on an older kernel or one with metering off.
    public func markActive(_ set: String, member: String, portal: Portal) {
        guard let usageMark = try? function(\.usage_mark, "usage_mark", since: 8) else { return }
        _ = set.withCChars { setPointer, setLength in
            member.withCChars { memberPointer, memberLength in
                usageMark(plugin, portal.handle, setPointer, setLength, memberPointer, memberLength)
            }
        }
    }

    /// Appends an audit entry (details must be a JSON object) and returns once it is
    /// committed; throws when it cannot be stored (refuse the audited action then). Suspends
    /// instead of blocking: the kernel commits on its own pool (`audit_async`, ABI 1.4). On
    /// an older host, which has only the blocking `audit`, the SDK calls that on a thread of
    /// its own (never the cooperative pool) and resumes when it returns.
    public func audit(action: String, target: String, details: [String: JSONValue] = [:], portal: Portal? = nil) async throws {
        let json = String(decoding: try JSONValue.serialize(details), as: UTF8.self)
        let handle = portal?.handle
        guard let auditAsync = try? function(\.audit_async, "audit_async", since: 4) else {
            let services = self
            let portalBox = HostPointer(handle)
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                Thread.detachNewThread {
                    do {
                        try services.auditBlocking(action: action, target: target, json: json, portal: portalBox.pointer)
                        continuation.resume()
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            }
            return
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let box = Unmanaged.passRetained(StatusContinuation(continuation)).toOpaque()
            let error = HostErrorBuffer()
            let status = action.withCChars { actionPointer, actionLength in
                target.withCChars { targetPointer, targetLength in
                    json.withCChars { jsonPointer, jsonLength in
                        auditAsync(
                            plugin, handle, actionPointer, actionLength, targetPointer, targetLength, jsonPointer, jsonLength,
                            sdkStatusCompletion, box, error.buffer)
                    }
                }
            }
            if status != MB_OK {
                Unmanaged<StatusContinuation>.fromOpaque(box).release()
                continuation.resume(throwing: status == MB_ERR_INVALID_ARGUMENT ? PluginError.invalid(error.text) : PluginError.unavailable(error.text))
            }
        }
    }

    /// ``audit(action:target:details:portal:)`` for code on a thread that may block (a
    /// database worker of the plugin's own): blocks until the entry is committed. Never call
    /// it from `handle` or other async code.
    public func auditBlocking(action: String, target: String, details: [String: JSONValue] = [:], portal: Portal? = nil) throws {
        let json = String(decoding: try JSONValue.serialize(details), as: UTF8.self)
        try auditBlocking(action: action, target: target, json: json, portal: portal?.handle)
    }

    /// `audit` (ABI 1.0): blocks until the entry is committed.
    private func auditBlocking(action: String, target: String, json: String, portal: OpaquePointer?) throws {
        let error = HostErrorBuffer()
        let status = action.withCChars { actionPointer, actionLength in
            target.withCChars { targetPointer, targetLength in
                json.withCChars { jsonPointer, jsonLength in
                    api.pointee.audit(plugin, portal, actionPointer, actionLength, targetPointer, targetLength, jsonPointer, jsonLength, error.buffer)
                }
            }
        }
        switch status {
        case MB_OK: return
        case MB_ERR_INVALID_ARGUMENT: throw PluginError.invalid(error.text)
        default: throw PluginError.unavailable(error.text)
        }
    }

    /// libpq conninfo of the kernel's Postgres (its system database) serving `portal`.
    /// Throws ``PluginError/unsupported(_:)`` on a host older than ABI 1.1.
    public func postgresConninfo(portal: Portal? = nil) throws -> String {
        let conninfo = try function(\.postgres_conninfo, "postgres_conninfo", since: 1)
        guard let text = conninfo(plugin, portal?.handle) else { return "" }
        return String(cString: text)
    }

    /// Signs `claims` as an HS256 JWT with the portal's secret (the kernel keeps the secret).
    public func signPortalJWT(claims: [String: JSONValue], portal: Portal) async throws -> String {
        let sign = try function(\.portal_jwt_sign, "portal_jwt_sign", since: 1)
        let json = try JSONValue.serialize(claims)
        let token: [UInt8] = try await withCheckedThrowingContinuation { continuation in
            let box = Unmanaged.passRetained(ServiceContinuation(continuation)).toOpaque()
            let error = HostErrorBuffer()
            let status = Array(json).withUnsafeBufferPointer { buffer in
                sign(portal.handle, mb_host_bytes(data: buffer.baseAddress, len: buffer.count), sdkTokenCompletion, box, error.buffer)
            }
            if status != MB_OK {
                Unmanaged<ServiceContinuation>.fromOpaque(box).release()
                continuation.resume(throwing: status == MB_ERR_REFUSED ? PluginError.refused(error.text) : PluginError.invalid(error.text))
            }
        }
        return String(decoding: token, as: UTF8.self)
    }

    /// Verifies `token` (a JWT a client sent inside a message, such as the `access_token` of
    /// a Realtime join) for `portal` exactly as the kernel verifies a request's credential:
    /// a key or user token of `portal` is kind `portal`; an expired, malformed or foreign
    /// token is kind `invalid` with a ``PluginCredential/reason``; an empty one is `none`.
    /// Throws ``PluginError/unsupported(_:)`` on a host older than ABI 1.6 and
    /// ``PluginError/unavailable(_:)`` when the kernel could not check the token (treat the
    /// token as not verified). Never blocks a thread.
    public func verifyPortalToken(_ token: String, portal: Portal) async throws -> PluginCredential {
        let verify = try function(\.portal_token_verify, "portal_token_verify", since: 6)
        let json: [UInt8] = try await withCheckedThrowingContinuation { continuation in
            let box = Unmanaged.passRetained(ServiceContinuation(continuation)).toOpaque()
            let error = HostErrorBuffer()
            let status = Array(token.utf8).withUnsafeBufferPointer { buffer in
                // The completion has portal_jwt_sign's shape: bytes on MB_OK, else a message.
                verify(portal.handle, mb_host_bytes(data: buffer.baseAddress, len: buffer.count), sdkTokenCompletion, box, error.buffer)
            }
            if status != MB_OK {
                Unmanaged<ServiceContinuation>.fromOpaque(box).release()
                continuation.resume(throwing: status == MB_ERR_UNSUPPORTED ? PluginError.unsupported(error.text) : PluginError.invalid(error.text))
            }
        }
        return PluginCredential.parsed(json: json)
    }

    /// URL of the kernel's Redis (the embedded one's `unix://` socket, or `[redis] url`), for
    /// the plugin's own connections such as pub/sub between kernels; nil when the kernel runs
    /// without Redis or is older than ABI 1.6. It may hold a password: log it only through
    /// a redacting formatter.
    public var redisURL: String? {
        guard let redisURL = try? function(\.redis_url, "redis_url", since: 6), let text = redisURL(plugin) else { return nil }
        let url = String(cString: text)
        return url.isEmpty ? nil : url
    }

    /// Seals `plaintext` for storage under the kernel's secret-box key (the key stays in the
    /// kernel), bound to this plugin, `portal` and `context` (a row id): store the result,
    /// never the plaintext.
    public func sealSecret(_ plaintext: [UInt8], portal: Portal, context: String) throws -> String {
        String(decoding: try secretCall(try function(\.secret_seal, "secret_seal", since: 2), portal: portal, context: context, value: plaintext), as: UTF8.self)
    }

    /// Opens what ``sealSecret(_:portal:context:)`` produced for the same portal and context.
    /// Throws ``PluginError/refused(_:)`` for a value that was altered, moved to another row
    /// or sealed under another kernel's key. The caller wipes the plaintext when done.
    public func openSecret(_ sealed: String, portal: Portal, context: String) throws -> [UInt8] {
        try secretCall(try function(\.secret_open, "secret_open", since: 2), portal: portal, context: context, value: Array(sealed.utf8))
    }

    /// Calls `secret_seal` or `secret_open` (same shape) and returns what its sink received.
    private func secretCall(
        _ function: @convention(c) (OpaquePointer?, OpaquePointer?, mb_host_bytes, mb_host_bytes, mb_bytes_sink?, UnsafeMutableRawPointer?, mb_host_error_buffer) -> mb_status,
        portal: Portal, context: String, value: [UInt8]
    ) throws -> [UInt8] {
        let collector = ByteCollector()
        let error = HostErrorBuffer()
        let contextBytes = Array(context.utf8)
        let status = contextBytes.withUnsafeBufferPointer { contextBuffer in
            value.withUnsafeBufferPointer { valueBuffer in
                function(
                    plugin, portal.handle, mb_host_bytes(data: contextBuffer.baseAddress, len: contextBuffer.count),
                    mb_host_bytes(data: valueBuffer.baseAddress, len: valueBuffer.count), sdkCollectBytes,
                    Unmanaged.passUnretained(collector).toOpaque(), error.buffer)
            }
        }
        switch status {
        case MB_OK: return collector.bytes
        case MB_ERR_REFUSED: throw PluginError.refused(error.text)
        default: throw PluginError.invalid(error.text)
        }
    }

    /// An outbound HTTP response.
    public struct HTTPResult: Sendable {
        /// HTTP status.
        public var status: Int
        /// Headers.
        public var headers: [(name: String, value: String)]
        /// Body.
        public var body: [UInt8]
    }

    /// Performs an outbound HTTP request through the kernel (egress goes through the host).
    public func fetch(
        _ url: String, method: String = "GET", headers: [(String, String)] = [], body: [UInt8] = [], timeoutMilliseconds: UInt32 = 0, portal: Portal? = nil
    ) async throws -> HTTPResult {
        try await withCheckedThrowingContinuation { continuation in
            let box = Unmanaged.passRetained(FetchContinuation(continuation)).toOpaque()
            let names = headers.map { Array($0.0.utf8) }
            let values = headers.map { Array($0.1.utf8) }
            let error = HostErrorBuffer()
            let status: mb_status = withPluginBytes(Array(method.utf8)) { methodBytes in
                withPluginBytes(Array(url.utf8)) { urlBytes in
                    withPluginBytes(body) { bodyBytes in
                        withPluginHeaders(names, values) { headerPointer, headerCount in
                            var request = mb_plugin_http_request(
                                struct_size: MemoryLayout<mb_plugin_http_request>.size, method: methodBytes, url: urlBytes,
                                headers: headerPointer, header_count: headerCount, body: bodyBytes, timeout_ms: timeoutMilliseconds)
                            return api.pointee.http_fetch(plugin, portal?.handle, &request, sdkFetchCompletion, box, error.buffer)
                        }
                    }
                }
            }
            if status != MB_OK {
                Unmanaged<FetchContinuation>.fromOpaque(box).release()
                continuation.resume(throwing: status == MB_ERR_REFUSED ? PluginError.refused(error.text) : PluginError.invalid(error.text))
            }
        }
    }

    /// Calls `method` of the JSON service `name` v`major` on behalf of the request whose
    /// credential is `caller`: the JSON object `arguments` is sent with the member `caller` set
    /// to that credential as the kernel verified it, so the service decides what this caller
    /// may do (`vault.v1` reveals values only to `service_role` or an aal2 admin). The service
    /// convention: a service acting on a portal's data takes its caller this way.
    public func callService(_ name: String, major: UInt32, method: String, arguments: [String: JSONValue], caller: PluginCredential, portal: Portal) async throws -> [UInt8] {
        var arguments = arguments
        arguments["caller"] = nil  // only the kernel's credential may say who calls
        guard let argumentData = try? JSONValue.serialize(arguments) else {
            throw PluginError.invalid("service arguments must be a JSON object")
        }
        // `{"caller":<credential>,` followed by the arguments' members: the credential goes as
        // the kernel's bytes, not re-encoded.
        var json = Array(#"{"caller":"#.utf8) + caller.json
        let members = Array(argumentData.dropFirst())  // after "{"
        json += members.first == UInt8(ascii: "}") ? members : [UInt8(ascii: ",")] + members
        return try await callService(name, major: major, method: method, json: json, portal: portal)
    }

    /// Calls `method` on the JSON service `name` v`major` for `portal` (the exporter must be
    /// enabled there) and returns the JSON result. Prefer ``callService(_:major:method:arguments:caller:portal:)``
    /// when the call serves a request.
    public func callService(_ name: String, major: UInt32, method: String, json: [UInt8], portal: Portal) async throws -> [UInt8] {
        var binding = mb_service_binding()
        let error = HostErrorBuffer()
        let status = name.withCChars { api.pointee.service_lookup(portal.handle, $0, $1, major, &binding, error.buffer) }
        switch status {
        case MB_OK: break
        case MB_ERR_REFUSED: throw PluginError.refused(error.text)
        case MB_ERR_NOT_FOUND: throw PluginError.notFound(error.text)
        default: throw PluginError.invalid(error.text)
        }
        guard let table = binding.table, binding.table_size >= MemoryLayout<mb_json_service>.size else {
            throw PluginError.invalid("service \(name).v\(major) is not a JSON service table")
        }
        let service = table.assumingMemoryBound(to: mb_json_service.self).pointee
        let instance = binding.instance
        return try await withCheckedThrowingContinuation { continuation in
            let box = Unmanaged.passRetained(ServiceContinuation(continuation)).toOpaque()
            let started = Array(method.utf8).withUnsafeBufferPointer { methodBuffer in
                json.withUnsafeBufferPointer { jsonBuffer in
                    service.call(
                        instance, mb_host_bytes(data: methodBuffer.baseAddress, len: methodBuffer.count),
                        mb_host_bytes(data: jsonBuffer.baseAddress, len: jsonBuffer.count), sdkServiceReply, box)
                }
            }
            if started != MB_OK {
                Unmanaged<ServiceContinuation>.fromOpaque(box).release()
                continuation.resume(throwing: PluginError.unavailable("service \(name).v\(major) refused the call (status \(started.rawValue))"))
            }
        }
    }
}

final class FetchContinuation {
    let continuation: CheckedContinuation<PluginHostServices.HTTPResult, any Error>
    init(_ continuation: CheckedContinuation<PluginHostServices.HTTPResult, any Error>) { self.continuation = continuation }
}

final class StatusContinuation {
    let continuation: CheckedContinuation<Void, any Error>
    init(_ continuation: CheckedContinuation<Void, any Error>) { self.continuation = continuation }
}

func sdkStatusCompletion(_ context: UnsafeMutableRawPointer?, _ status: mb_status, _ message: mb_host_bytes) {
    guard let context else { return }
    let box = Unmanaged<StatusContinuation>.fromOpaque(context).takeRetainedValue()
    if status == MB_OK {
        box.continuation.resume()
    } else {
        box.continuation.resume(throwing: PluginError.unavailable(copyString(message)))
    }
}

final class ServiceContinuation {
    let continuation: CheckedContinuation<[UInt8], any Error>
    init(_ continuation: CheckedContinuation<[UInt8], any Error>) { self.continuation = continuation }
}

private func sdkFetchCompletion(_ context: UnsafeMutableRawPointer?, _ response: UnsafePointer<mb_host_http_response>?) {
    guard let context else { return }
    let box = Unmanaged<FetchContinuation>.fromOpaque(context).takeRetainedValue()
    guard let response = response?.pointee else {
        box.continuation.resume(throwing: PluginError.unavailable("no response"))
        return
    }
    if response.status != MB_OK {
        let message = copyString(response.error)
        box.continuation.resume(throwing: response.status == MB_ERR_REFUSED ? PluginError.refused(message) : PluginError.unavailable(message))
        return
    }
    var headers: [(name: String, value: String)] = []
    if let pointer = response.headers {
        for index in 0..<response.header_count { headers.append((copyString(pointer[index].name), copyString(pointer[index].value))) }
    }
    box.continuation.resume(returning: .init(status: Int(response.http_status), headers: headers, body: copyBytes(response.body)))
}

/// Holds what a synchronous host call hands to its sink.
private final class ByteCollector {
    var bytes: [UInt8] = []
}

private func sdkCollectBytes(_ context: UnsafeMutableRawPointer?, _ bytes: mb_host_bytes) {
    guard let context else { return }
    Unmanaged<ByteCollector>.fromOpaque(context).takeUnretainedValue().bytes = copyBytes(bytes)
}

private func sdkTokenCompletion(_ context: UnsafeMutableRawPointer?, _ status: mb_status, _ bytes: mb_host_bytes) {
    guard let context else { return }
    let box = Unmanaged<ServiceContinuation>.fromOpaque(context).takeRetainedValue()
    if status == MB_OK {
        box.continuation.resume(returning: copyBytes(bytes))
    } else {
        box.continuation.resume(throwing: PluginError.unavailable(copyString(bytes)))
    }
}

private func sdkServiceReply(_ context: UnsafeMutableRawPointer?, _ status: mb_status, _ bytes: mb_plugin_bytes) {
    guard let context else { return }
    let box = Unmanaged<ServiceContinuation>.fromOpaque(context).takeRetainedValue()
    let copied = copyBytes(bytes)
    let message = String(decoding: copied, as: UTF8.self)
    switch status {
    case MB_OK: box.continuation.resume(returning: copied)
    case MB_ERR_REFUSED: box.continuation.resume(throwing: PluginError.refused(message))
    case MB_ERR_NOT_FOUND: box.continuation.resume(throwing: PluginError.notFound(message))
    case MB_ERR_INVALID_ARGUMENT: box.continuation.resume(throwing: PluginError.invalid(message))
    default: box.continuation.resume(throwing: PluginError.unavailable(message))
    }
}
