import AsyncHTTPClient
import CSodium
import Foundation
import Logging
import MeltyABIBytes
import MeltyJSON
import MeltyPluginABI
import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// Receives audit entries from plugins; the kernel installs the real audit log here.
public protocol AuditSink: Sendable {
    /// Appends one entry; throws when it cannot be stored.
    func append(actor: String, action: String, target: String, portal: String?, detailsJSON: String) throws
    /// Appends one entry without blocking; `completion` gets nil once it is stored, or the error.
    func append(
        actor: String, action: String, target: String, portal: String?, detailsJSON: String,
        completion: @escaping @Sendable ((any Error)?) -> Void)
}

extension AuditSink {
    /// Sinks that never wait (a log line) complete at once.
    public func append(
        actor: String, action: String, target: String, portal: String?, detailsJSON: String,
        completion: @escaping @Sendable ((any Error)?) -> Void
    ) {
        do {
            try append(actor: actor, action: action, target: target, portal: portal, detailsJSON: detailsJSON)
            completion(nil)
        } catch {
            completion(error)
        }
    }
}

/// Writes audit entries as structured log lines (until an audit store is configured).
struct LogAuditSink: AuditSink {
    let logger: Logger
    func append(actor: String, action: String, target: String, portal: String?, detailsJSON: String) throws {
        logger.notice(
            "audit",
            metadata: [
                "audit.actor": "\(actor)", "audit.action": "\(action)", "audit.target": "\(target)",
                "audit.portal": "\(portal ?? "")", "audit.details": "\(detailsJSON)",
            ])
    }
}

/// The C host table: the same functions for every kernel; each finds its kernel's
/// ``HostContext`` through the handle, token or connection id it receives.
func hostFunctionTable() -> mb_host_api {
    mb_host_api(
        struct_size: MemoryLayout<mb_host_api>.size,
        abi_major: UInt32(MB_ABI_MAJOR),
        abi_minor: UInt32(MB_ABI_MINOR),
        log: hostLog,
        audit: hostAudit,
        counter_add: hostCounterAdd,
        respond: hostRespond,
        ws_send: hostWebSocketSend,
        ws_broadcast: hostWebSocketBroadcast,
        ws_close: hostWebSocketClose,
        service_export: hostServiceExport,
        service_lookup: hostServiceLookup,
        http_fetch: hostHTTPFetch,
        portal_name: hostPortalName,
        postgres_conninfo: hostPostgresConninfo,
        portal_jwt_sign: hostPortalJWTSign,
        secret_seal: hostSecretSeal,
        secret_open: hostSecretOpen,
        audit_async: hostAuditAsync,
        portal_token_verify: hostPortalTokenVerify,
        redis_url: hostRedisURL,
        request_body_read: hostRequestBodyRead,
        respond_start: hostRespondStart,
        respond_write: hostRespondWrite,
        respond_end: hostRespondEnd,
        usage_mark: hostUsageMark
    )
}

/// The client behind `http_fetch`: redirects are not followed (a public host could send
/// the request on into the private network); the plugin sees the 3xx and decides.
/// Shared by every kernel of the process like `HTTPClient.shared`; it holds no kernel state.
let egressClient = HTTPClient(
    eventLoopGroup: HTTPClient.defaultEventLoopGroup,
    configuration: HTTPClient.Configuration(redirectConfiguration: .disallow))

private func hostLog(_ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ level: mb_log_level, _ message: UnsafePointer<CChar>?, _ length: Int) {
    guard let handle = PluginHandle.from(plugin) else { return }
    let levels: [Logger.Level] = [.trace, .debug, .info, .notice, .warning, .error, .critical]
    let index = Int(level.rawValue)
    var metadata: Logger.Metadata = [:]
    if let portal = PortalHandle.from(portal) { metadata["portal"] = .string(portal.name) }
    handle.logger.log(
        level: levels.indices.contains(index) ? levels[index] : .info,
        "\(String(pluginChars: message, count: length))", metadata: metadata)
}

/// What `audit` and `audit_async` share: the checked arguments and where the entry goes.
private func pluginAuditEntry(
    _ function: String, _ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ action: UnsafePointer<CChar>?, _ actionLength: Int,
    _ target: UnsafePointer<CChar>?, _ targetLength: Int, _ details: UnsafePointer<CChar>?, _ detailsLength: Int,
    _ error: mb_host_error_buffer
) -> (sink: any AuditSink, context: HostContext, actor: String, action: String, target: String, portal: String?, details: String)? {
    guard let handle = PluginHandle.from(plugin) else {
        write("\(function): plugin handle is NULL", into: error)
        return nil
    }
    var detailsJSON = String(pluginChars: details, count: detailsLength)
    if detailsJSON.isEmpty { detailsJSON = "{}" }
    guard (try? JSONSerialization.jsonObject(with: Data(detailsJSON.utf8))) is [String: Any] else {
        write("\(function): details must be a JSON object", into: error)
        return nil
    }
    let portalHandle = PortalHandle.from(portal)
    // The serving kernel's, when there is a portal; else the kernel that loaded the plugin.
    let context = portalHandle?.context ?? handle.context
    return (
        portalHandle?.audit ?? context.audit, context, "plugin:\(handle.name)", String(pluginChars: action, count: actionLength),
        String(pluginChars: target, count: targetLength), portalHandle?.name, detailsJSON
    )
}

private func hostAudit(
    _ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ action: UnsafePointer<CChar>?, _ actionLength: Int,
    _ target: UnsafePointer<CChar>?, _ targetLength: Int, _ details: UnsafePointer<CChar>?, _ detailsLength: Int,
    _ error: mb_host_error_buffer
) -> mb_status {
    guard let entry = pluginAuditEntry("audit", plugin, portal, action, actionLength, target, targetLength, details, detailsLength, error) else {
        return MB_ERR_INVALID_ARGUMENT
    }
    do {
        try entry.sink.append(actor: entry.actor, action: entry.action, target: entry.target, portal: entry.portal, detailsJSON: entry.details)
        return MB_OK
    } catch let failure {
        write("audit store unavailable: \(failure)", into: error)
        return MB_ERR_UNAVAILABLE
    }
}

private func hostAuditAsync(
    _ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ action: UnsafePointer<CChar>?, _ actionLength: Int,
    _ target: UnsafePointer<CChar>?, _ targetLength: Int, _ details: UnsafePointer<CChar>?, _ detailsLength: Int,
    _ completion: mb_status_completion?, _ context: UnsafeMutableRawPointer?, _ error: mb_host_error_buffer
) -> mb_status {
    guard let completion else {
        write("audit_async: completion must not be NULL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    guard let entry = pluginAuditEntry("audit_async", plugin, portal, action, actionLength, target, targetLength, details, detailsLength, error) else {
        return MB_ERR_INVALID_ARGUMENT
    }
    let pluginContext = SharedPointer(context)
    // Queued without blocking: the completion runs once the group commit holding the entry is done.
    entry.sink.append(actor: entry.actor, action: entry.action, target: entry.target, portal: entry.portal, detailsJSON: entry.details) { failure in
        var message: [UInt8] = []
        var status = MB_OK
        if let failure {
            message = Array("audit store unavailable: \(failure)".utf8)
            status = MB_ERR_UNAVAILABLE
        }
        message.withHostBytes { completion(pluginContext.pointer, status, $0) }
    }
    return MB_OK
}

private func hostCounterAdd(_ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ length: Int, _ delta: Int64) {
    guard let handle = PluginHandle.from(plugin) else { return }
    let portalHandle = PortalHandle.from(portal)
    let text = String(pluginChars: name, count: length)
    // The portal's meter too (docs/hub.md): the counter becomes a metered quantity.
    portalHandle?.usage?.add(counter: text, plugin: handle.name, delta: delta)
    let cleaned = String(text.lowercased().unicodeScalars.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "_" })
    // A `_peak` is a level, not a count: summing it into a Prometheus counter means nothing
    // (the meter shows it as meltybase_usage_peak).
    if UsageMetric.isPeak(cleaned) { return }
    let counter = Counter(
        label: "meltybase_plugin_\(cleaned)_total",
        dimensions: [("plugin", handle.name), ("portal", portalHandle?.name ?? "")])
    counter.increment(by: delta)
}

/// `usage_mark` (ABI 1.8): `member` was active this month in the portal's set `set_name`.
private func hostUsageMark(
    _ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ nameLength: Int, _ member: UnsafePointer<CChar>?,
    _ memberLength: Int
) -> mb_status {
    guard PluginHandle.from(plugin) != nil, let handle = PortalHandle.from(portal), let name, let member, (1...1024).contains(memberLength) else {
        return MB_ERR_INVALID_ARGUMENT
    }
    let set = String(pluginChars: name, count: nameLength)
    // The Hub names the metric active_<set>, which must itself be a valid metric name (64 at most).
    guard UsageMetric.isValidName(set), UsageMetric.isValidName("active_" + set) else { return MB_ERR_INVALID_ARGUMENT }
    guard let usage = handle.usage else { return MB_ERR_UNSUPPORTED }
    usage.mark(set: set, member: Array(UnsafeRawBufferPointer(start: member, count: memberLength)))
    return MB_OK
}

/// A plugin's response headers, copied out of its memory.
private func copyHeaders(_ headers: UnsafePointer<mb_plugin_header>?, _ count: Int) -> [(String, String)] {
    guard let headers, count > 0 else { return [] }
    var copied: [(String, String)] = []
    copied.reserveCapacity(count)
    for index in 0..<count {
        let header = headers[index]
        copied.append(
            (String(pluginBytes: header.name.data, count: header.name.len), String(pluginBytes: header.value.data, count: header.value.len)))
    }
    return copied
}

private func hostRespond(_ token: mb_request_token, _ status: UInt16, _ headers: UnsafePointer<mb_plugin_header>?, _ count: Int, _ body: mb_plugin_bytes) -> mb_status {
    let owner = HostContext.owner(of: token)
    let pending = owner?.pending
    let copied = copyHeaders(headers, count)
    guard (100...599).contains(status) else {
        let plugin = pending?.plugin(of: token) ?? "unknown"
        owner?.logger.warning(
            "plugin answered with an invalid HTTP status; the client gets a 502",
            metadata: ["plugin": .string(plugin), "status": .stringConvertible(status), "token": .stringConvertible(token)])
        let invalid = GatewayError(
            status: 502, code: "invalid_plugin_response",
            message: "plugin \"\(plugin)\" answered with the invalid HTTP status \(status)",
            hint: "plugins must respond with a status from 100 to 599")
        let answered = pending?.complete(token, with: PluginResponse(status: 502, headers: [("content-type", "application/json")], body: invalid.jsonBytes)) ?? false
        return answered ? MB_ERR_INVALID_ARGUMENT : MB_ERR_NOT_FOUND
    }
    let response = PluginResponse(status: Int(status), headers: copied, body: copyBytes(body))
    return pending?.complete(token, with: response) == true ? MB_OK : MB_ERR_NOT_FOUND
}

/// One frame built once, shared by every connection it is queued for (a broadcast to 10,000
/// sockets copies its bytes once). Text that is not UTF-8 is repaired here, once, so no
/// client gets an invalid text frame.
private func outboundFrame(_ isText: Int32, _ payload: mb_plugin_bytes) -> WebSocketOutbound {
    let bytes = UnsafeRawBufferPointer(start: payload.data, count: payload.data == nil ? 0 : payload.len)
    guard isText != 0 else { return .binary(ByteBuffer(bytes: bytes)) }
    if String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) != nil { return .text(ByteBuffer(bytes: bytes)) }
    return .text(ByteBuffer(string: String(decoding: bytes.bindMemory(to: UInt8.self), as: UTF8.self)))
}

private func hostWebSocketSend(_ connection: mb_connection_id, _ isText: Int32, _ payload: mb_plugin_bytes) -> mb_status {
    HostContext.owner(of: connection)?.webSockets.send(connection, outboundFrame(isText, payload)) == true ? MB_OK : MB_ERR_NOT_FOUND
}

private func hostWebSocketBroadcast(_ connections: UnsafePointer<mb_connection_id>?, _ count: Int, _ isText: Int32, _ payload: mb_plugin_bytes) -> Int {
    guard let connections, count > 0 else { return 0 }
    let frame = outboundFrame(isText, payload)
    let ids = UnsafeBufferPointer(start: connections, count: count)
    // Runs of ids of one kernel (in practice all of them) go to its hub in one call.
    var queued = 0
    var start = 0
    while start < count {
        let slot = HostContext.slot(of: ids[start])
        var end = start + 1
        while end < count && HostContext.slot(of: ids[end]) == slot { end += 1 }
        if let owner = HostContext.owner(of: ids[start]) { queued += owner.webSockets.send(frame, to: UnsafeBufferPointer(rebasing: ids[start..<end])) }
        start = end
    }
    return queued
}

private func hostWebSocketClose(_ connection: mb_connection_id, _ code: UInt16, _ reason: mb_plugin_bytes) -> mb_status {
    let text = String(pluginBytes: reason.data, count: reason.len)
    return HostContext.owner(of: connection)?.webSockets.send(connection, .close(code: code, reason: text)) == true ? MB_OK : MB_ERR_NOT_FOUND
}

private func hostServiceExport(
    _ plugin: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ nameLength: Int, _ major: UInt32,
    _ table: UnsafeRawPointer?, _ size: Int, _ error: mb_host_error_buffer
) -> mb_status {
    guard let handle = PluginHandle.from(plugin), let table else {
        write("service_export: plugin handle and table must not be NULL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    let serviceName = String(pluginChars: name, count: nameLength)
    guard PluginLoader.isValidName(serviceName) else {
        write("service_export: name \"\(serviceName)\" must be a-z, 0-9, '-' and '_'", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    if let problem = handle.export(name: serviceName, major: major, table: table, size: size) {
        write(problem, into: error)
        return MB_ERR_ALREADY_EXISTS
    }
    return MB_OK
}

private func hostServiceLookup(
    _ portal: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ nameLength: Int, _ major: UInt32,
    _ binding: UnsafeMutablePointer<mb_service_binding>?, _ error: mb_host_error_buffer
) -> mb_status {
    guard let portalHandle = PortalHandle.from(portal), let binding else {
        write("service_lookup: portal handle and binding must not be NULL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    let serviceName = String(pluginChars: name, count: nameLength)
    guard let export = portalHandle.context.services.lookup(name: serviceName, major: major) else {
        write("no plugin exports service \(serviceName).v\(major)", into: error)
        return MB_ERR_NOT_FOUND
    }
    // The binding holds a use of the exporter's instance for its lease: an instance disabled
    // meanwhile is destroyed only after the lease (and the grace period) ends.
    guard let instance = portalHandle.instanceLookup(export.plugin), instance.acquireLease(seconds: PluginInstance.serviceBindingLease) else {
        write("service \(serviceName).v\(major) belongs to plugin \"\(export.plugin)\", which is not enabled for portal \"\(portalHandle.name)\"", into: error)
        return MB_ERR_REFUSED
    }
    binding.pointee = mb_service_binding(table: export.table.pointer, table_size: export.size, instance: instance.pointer)
    return MB_OK
}

private func hostPortalName(_ portal: OpaquePointer?) -> mb_host_bytes {
    guard let handle = PortalHandle.from(portal) else { return mb_host_bytes(data: nil, len: 0) }
    return mb_host_bytes(data: UnsafePointer(handle.nameBytes.baseAddress), len: handle.nameBytes.count)
}

private func hostPostgresConninfo(_ plugin: OpaquePointer?, _ portal: OpaquePointer?) -> UnsafePointer<CChar>? {
    (PortalHandle.from(portal)?.context ?? PluginHandle.from(plugin)?.context)?.conninfo.pointer ?? emptyCString.pointer
}

/// `postgres_conninfo` without any handle: never NULL.
private let emptyCString = SharedPointer(UnsafePointer<CChar>(strdup("")!))

private func hostPortalJWTSign(
    _ portal: OpaquePointer?, _ claims: mb_host_bytes, _ completion: mb_token_completion?, _ context: UnsafeMutableRawPointer?,
    _ error: mb_host_error_buffer
) -> mb_status {
    guard let handle = PortalHandle.from(portal), let completion else {
        write("portal_jwt_sign: portal handle and completion must not be NULL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    guard let keys = handle.keys else {
        write("portal_jwt_sign: this kernel has no portal keys", into: error)
        return MB_ERR_UNSUPPORTED
    }
    guard let values = try? JSONDecoder().decode([String: JSONValue].self, from: Data(copyBytes(claims))) else {
        write("portal_jwt_sign: claims must be a JSON object", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    if let refusal = PortalTokenRules.refusal(for: values, now: Date().timeIntervalSince1970) {
        write("portal_jwt_sign: \(refusal)", into: error)
        return MB_ERR_REFUSED
    }
    let contextAddress = UInt(bitPattern: context)
    let portalName = handle.name
    Task {
        let context = UnsafeMutableRawPointer(bitPattern: contextAddress)
        let status: mb_status
        var answer: [UInt8]
        do {
            answer = Array(try await keys.sign(portal: portalName, claims: values).utf8)
            status = MB_OK
        } catch {
            answer = Array("the portal's key is unavailable: \(error)".utf8)
            status = MB_ERR_UNAVAILABLE
        }
        answer.withHostBytes { completion(context, status, $0) }
    }
    return MB_OK
}

private func hostPortalTokenVerify(
    _ portal: OpaquePointer?, _ token: mb_host_bytes, _ completion: mb_credential_completion?, _ context: UnsafeMutableRawPointer?,
    _ error: mb_host_error_buffer
) -> mb_status {
    guard let handle = PortalHandle.from(portal), let completion else {
        write("portal_token_verify: portal handle and completion must not be NULL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    guard let credentials = handle.context.credentials else {
        write("portal_token_verify: this process serves no portals, so it verifies no portal tokens", into: error)
        return MB_ERR_UNSUPPORTED
    }
    let text = String(pluginBytes: token.data, count: token.len)
    let contextAddress = UInt(bitPattern: context)
    let portalName = handle.name
    Task {
        let context = UnsafeMutableRawPointer(bitPattern: contextAddress)
        let status: mb_status
        var answer: [UInt8]
        do {
            answer = try await credentials.credentialJSON(token: text, portal: portalName)
            status = MB_OK
        } catch {
            answer = Array("the token could not be checked: \(error)".utf8)
            status = MB_ERR_UNAVAILABLE
        }
        answer.withHostBytes { completion(context, status, $0) }
    }
    return MB_OK
}

private func hostRedisURL(_ plugin: OpaquePointer?) -> UnsafePointer<CChar>? {
    PluginHandle.from(plugin)?.context.redisURL.pointer ?? emptyCString.pointer
}

/// What `secret_seal` and `secret_open` share: the handles, the kernel's keys and the byte arguments.
private func pluginSecretArguments(
    _ function: String, _ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ context: mb_host_bytes, _ value: mb_host_bytes,
    _ sink: mb_bytes_sink?, _ error: mb_host_error_buffer
) -> (plugin: String, portal: PortalHandle, keys: PortalKeys, context: String, value: [UInt8], sink: mb_bytes_sink)? {
    guard let pluginHandle = PluginHandle.from(plugin), let handle = PortalHandle.from(portal), let sink else {
        write("\(function): plugin handle, portal handle and sink must not be NULL", into: error)
        return nil
    }
    guard let keys = handle.keys else {
        write("\(function): this kernel has no secret-box key", into: error)
        return nil
    }
    guard let contextText = String(validating: copyBytes(context), as: UTF8.self) else {
        write("\(function): context must be UTF-8", into: error)
        return nil
    }
    return (pluginHandle.name, handle, keys, contextText, copyBytes(value), sink)
}

private func hostSecretSeal(
    _ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ context: mb_host_bytes, _ plaintext: mb_host_bytes,
    _ sink: mb_bytes_sink?, _ pluginContext: UnsafeMutableRawPointer?, _ error: mb_host_error_buffer
) -> mb_status {
    guard var arguments = pluginSecretArguments("secret_seal", plugin, portal, context, plaintext, sink, error) else { return MB_ERR_INVALID_ARGUMENT }
    defer { sodium_memzero(&arguments.value, arguments.value.count) }
    let sealed = Array(arguments.keys.sealPluginSecret(arguments.value, plugin: arguments.plugin, portal: arguments.portal.name, context: arguments.context).utf8)
    sealed.withHostBytes { arguments.sink(pluginContext, $0) }
    return MB_OK
}

private func hostSecretOpen(
    _ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ context: mb_host_bytes, _ sealed: mb_host_bytes,
    _ sink: mb_bytes_sink?, _ pluginContext: UnsafeMutableRawPointer?, _ errorBuffer: mb_host_error_buffer
) -> mb_status {
    guard let arguments = pluginSecretArguments("secret_open", plugin, portal, context, sealed, sink, errorBuffer) else { return MB_ERR_INVALID_ARGUMENT }
    guard let text = String(validating: arguments.value, as: UTF8.self), SecretBox.looksSealed(text) else {
        write("secret_open: the value is not a sealed secret (secret_seal output starts with \"\(SecretBox.formatTag):\")", into: errorBuffer)
        return MB_ERR_INVALID_ARGUMENT
    }
    do {
        var plaintext = try arguments.keys.openPluginSecret(text, plugin: arguments.plugin, portal: arguments.portal.name, context: arguments.context)
        defer { sodium_memzero(&plaintext, plaintext.count) }
        plaintext.withHostBytes { arguments.sink(pluginContext, $0) }
        return MB_OK
    } catch let failure as IdentityError {
        write("secret_open: \(failure.message)" + (failure.hint.map { "; \($0)" } ?? ""), into: errorBuffer)
        return MB_ERR_REFUSED
    } catch {
        write("secret_open: the value does not open", into: errorBuffer)
        return MB_ERR_REFUSED
    }
}

private func hostHTTPFetch(
    _ plugin: OpaquePointer?, _ portal: OpaquePointer?, _ request: UnsafePointer<mb_plugin_http_request>?,
    _ completion: mb_http_completion?, _ context: UnsafeMutableRawPointer?, _ error: mb_host_error_buffer
) -> mb_status {
    guard let handle = PluginHandle.from(plugin), let request, let completion else {
        write("http_fetch: plugin handle, request and completion must not be NULL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    let value = request.pointee
    let urlText = String(pluginBytes: value.url.data, count: value.url.len)
    guard let url = URL(string: urlText), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else {
        write("http_fetch: \"\(urlText)\" is not an absolute http:// or https:// URL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    let portalHandle = PortalHandle.from(portal)
    let host = (url.host ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    let port = url.port ?? (scheme == "https" ? 443 : 80)
    let decision = (portalHandle?.egress ?? EgressPolicy()).decide(plugin: handle.name, portal: portalHandle?.name, host: host, port: port)
    if case .refused(let reason) = decision {
        write(reason, into: error)
        return MB_ERR_REFUSED
    }
    if decision == .publicOnly, EgressPolicy.isAddressLiteral(host), !EgressPolicy.isPublic(address: host) {
        write("http_fetch: \(host) is a loopback, private or link-local address; list it in [plugins.\(handle.name)] egress_hosts to allow it", into: error)
        return MB_ERR_REFUSED
    }
    var outbound = HTTPClientRequest(url: urlText)
    let method = String(pluginBytes: value.method.data, count: value.method.len)
    outbound.method = .init(rawValue: method.isEmpty ? "GET" : method.uppercased())
    if let headers = value.headers {
        for index in 0..<value.header_count {
            outbound.headers.add(
                name: String(pluginBytes: headers[index].name.data, count: headers[index].name.len),
                value: String(pluginBytes: headers[index].value.data, count: headers[index].value.len))
        }
    }
    let body = copyBytes(value.body)
    if !body.isEmpty { outbound.body = .bytes(ByteBuffer(bytes: body)) }
    let timeout = value.timeout_ms == 0 ? 30_000 : Int64(value.timeout_ms)
    let contextAddress = UInt(bitPattern: context)
    let portalName = portalHandle?.name ?? ""
    let pluginName = handle.name
    let resolver = portalHandle?.context ?? handle.context
    Task {
        let context = UnsafeMutableRawPointer(bitPattern: contextAddress)
        if decision == .publicOnly, !EgressPolicy.isAddressLiteral(host) {
            // getaddrinfo blocks: it runs on the kernel's blocking pool (no answer once the kernel stopped).
            let addresses = (try? await resolver.runBlocking { EgressPolicy.resolve(host) }) ?? []
            if let blocked = addresses.first(where: { !EgressPolicy.isPublic(address: $0) }) ?? (addresses.isEmpty ? "no address" : nil) {
                Counter(label: "meltybase_egress_refused_total", dimensions: [("plugin", pluginName), ("portal", portalName)]).increment()
                deliver(
                    completion, context, status: MB_ERR_REFUSED, httpStatus: 0, headers: [], body: [],
                    error: "http_fetch: \(host) resolves to \(blocked), which is not a public address; list it in [plugins.\(pluginName)] egress_hosts to allow it")
                return
            }
        }
        do {
            let response = try await egressClient.execute(outbound, timeout: .milliseconds(timeout))
            let bytes = Array(try await response.body.collect(upTo: 64 * 1024 * 1024).readableBytesView)
            let headers = response.headers.map { ($0.name, $0.value) }
            Counter(label: "meltybase_egress_requests_total", dimensions: [("plugin", handle.name), ("portal", portalName)]).increment()
            deliver(completion, context, status: MB_OK, httpStatus: UInt16(response.status.code), headers: headers, body: bytes, error: "")
        } catch {
            deliver(completion, context, status: MB_ERR_UNAVAILABLE, httpStatus: 0, headers: [], body: [], error: "\(error)")
        }
    }
    return MB_OK
}

private func deliver(
    _ completion: mb_http_completion, _ context: UnsafeMutableRawPointer?, status: mb_status, httpStatus: UInt16,
    headers: [(String, String)], body: [UInt8], error: String
) {
    var strings: [[UInt8]] = []
    for (name, value) in headers {
        strings.append(Array(name.utf8))
        strings.append(Array(value.utf8))
    }
    let errorBytes = Array(error.utf8)
    withHostHeaders(strings) { headerPointer, headerCount in
        body.withUnsafeBufferPointer { bodyBuffer in
            errorBytes.withUnsafeBufferPointer { errorBuffer in
                var response = mb_host_http_response(
                    struct_size: MemoryLayout<mb_host_http_response>.size, status: status, http_status: httpStatus,
                    headers: headerPointer, header_count: headerCount,
                    body: mb_host_bytes(data: bodyBuffer.baseAddress, len: bodyBuffer.count),
                    error: mb_host_bytes(data: errorBuffer.baseAddress, len: errorBuffer.count))
                completion(context, &response)
            }
        }
    }
}

/// Calls `body` with host headers built from alternating name and value byte arrays.
func withHostHeaders<R>(_ namesAndValues: [[UInt8]], _ body: (UnsafePointer<mb_host_header>?, Int) -> R) -> R {
    let joined = namesAndValues.flatMap { $0 }
    return joined.withUnsafeBufferPointer { storage in
        var headers: [mb_host_header] = []
        var offset = 0
        var index = 0
        while index + 1 < namesAndValues.count {
            let nameLength = namesAndValues[index].count
            let valueLength = namesAndValues[index + 1].count
            let base = storage.baseAddress
            headers.append(
                mb_host_header(
                    name: mb_host_bytes(data: base.map { $0 + offset }, len: nameLength),
                    value: mb_host_bytes(data: base.map { $0 + offset + nameLength }, len: valueLength)))
            offset += nameLength + valueLength
            index += 2
        }
        return headers.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
    }
}

/// The streamed exchange of `token`, or the status for a token without one: MB_ERR_UNSUPPORTED
/// when the request is in progress but not on a streaming prefix, else MB_ERR_NOT_FOUND.
private func streamedExchange(_ token: mb_request_token) -> (StreamedExchange?, mb_status) {
    guard let owner = HostContext.owner(of: token) else { return (nil, MB_ERR_NOT_FOUND) }
    if let exchange = owner.streams.exchange(token) { return (exchange, MB_OK) }
    return (nil, owner.pending.plugin(of: token) == nil ? MB_ERR_NOT_FOUND : MB_ERR_UNSUPPORTED)
}

private func hostRequestBodyRead(_ token: mb_request_token, _ completion: mb_body_chunk_completion?, _ context: UnsafeMutableRawPointer?) -> mb_status {
    guard let completion else { return MB_ERR_INVALID_ARGUMENT }
    let (found, status) = streamedExchange(token)
    guard let exchange = found else { return status }
    let plugin = SharedPointer(context)
    return exchange.read { status, bytes in
        bytes.withUnsafeBufferPointer { buffer in
            completion(plugin.pointer, status, mb_host_bytes(data: buffer.baseAddress, len: buffer.count))
        }
    }
}

private func hostRespondStart(_ token: mb_request_token, _ status: UInt16, _ headers: UnsafePointer<mb_plugin_header>?, _ count: Int) -> mb_status {
    let (found, lookup) = streamedExchange(token)
    guard let exchange = found else { return lookup }
    guard (100...599).contains(status) else { return MB_ERR_INVALID_ARGUMENT }
    let copied = copyHeaders(headers, count)
    guard let stream = exchange.start() else { return MB_ERR_INVALID_ARGUMENT }
    let response = PluginResponse(status: Int(status), headers: copied, body: [], stream: stream)
    guard HostContext.owner(of: token)?.pending.complete(token, with: response) == true else {
        _ = exchange.end(aborted: true)
        return MB_ERR_NOT_FOUND
    }
    return MB_OK
}

private func hostRespondWrite(
    _ token: mb_request_token, _ chunk: mb_plugin_bytes, _ written: mb_status_completion?, _ context: UnsafeMutableRawPointer?
) -> mb_status {
    let (found, lookup) = streamedExchange(token)
    guard let exchange = found else { return lookup == MB_ERR_UNSUPPORTED ? MB_ERR_INVALID_ARGUMENT : lookup }
    let buffer = ByteBuffer(bytes: UnsafeRawBufferPointer(start: chunk.data, count: chunk.data == nil ? 0 : chunk.len))
    guard let written else { return exchange.write(buffer, written: nil) }
    let callback = SharedPointer(written)
    let plugin = SharedPointer(context)
    return exchange.write(buffer) { @Sendable status in
        var reason = status == MB_OK ? "" : "the client went away before the chunk was written"
        reason.withUTF8 { callback.pointer(plugin.pointer, status, mb_host_bytes(data: $0.baseAddress, len: $0.count)) }
    }
}

private func hostRespondEnd(_ token: mb_request_token, _ aborted: Int32) -> mb_status {
    let (found, lookup) = streamedExchange(token)
    guard let exchange = found else { return lookup == MB_ERR_UNSUPPORTED ? MB_ERR_NOT_FOUND : lookup }
    return exchange.end(aborted: aborted != 0)
}
