import Foundation
import MeltyABIBytes
import MeltyBuildSignature
import MeltyPluginABI
import Synchronization

/// Builds the C descriptor for a ``PortalPlugin`` type and bridges every callback.
///
/// Each plugin library links its own copy of the SDK, so the globals here belong to one plugin.
public enum PluginExport {
    /// What the C entry points need: C function pointers cannot capture, so it lives here.
    struct State {
        var pluginType: (any PortalPlugin.Type)?
        var host: PluginHostServices?
        var descriptor: HostPointer<UnsafeMutablePointer<mb_plugin_descriptor>>?
        var jsonServices: [(name: String, major: UInt32, handler: JSONServiceHandler)] = []
    }

    static let state = Mutex(State())

    static var pluginType: (any PortalPlugin.Type)? { state.withLock { $0.pluginType } }

    /// The kernel's services, once `start` was called (nil before); what `start` received.
    public static var host: PluginHostServices? { state.withLock { $0.host } }

    static var jsonServices: [(name: String, major: UInt32, handler: JSONServiceHandler)] { state.withLock { $0.jsonServices } }

    /// A JSON service method handler: (instance, method, JSON argument) → JSON result.
    public typealias JSONServiceHandler = @Sendable (any PortalPlugin, String, [UInt8]) async throws -> [UInt8]

    /// The immortal descriptor for `type`; return it from `meltybase_plugin_entry`.
    public static func descriptor<Plugin: PortalPlugin>(for type: Plugin.Type) -> UnsafeRawPointer {
        if let existing = state.withLock({ $0.descriptor }) { return UnsafeRawPointer(existing.pointer) }
        let description = type.description
        let pointer = UnsafeMutablePointer<mb_plugin_descriptor>.allocate(capacity: 1)
        pointer.initialize(
            to: mb_plugin_descriptor(
                struct_size: MemoryLayout<mb_plugin_descriptor>.size,
                abi_major: UInt32(MB_ABI_MAJOR),
                abi_minor: UInt32(MB_ABI_MINOR),
                build_signature: UnsafePointer(strdup(BuildSignature.swift)),
                name: UnsafePointer(strdup(description.name)),
                version: UnsafePointer(strdup(description.version)),
                route_prefix: UnsafePointer(strdup(description.routePrefix)),
                init: sdkInit,
                instance_create: sdkInstanceCreate,
                instance_destroy: sdkInstanceDestroy,
                handle_request: sdkHandleRequest,
                ws_open: sdkWebSocketOpen,
                ws_message: sdkWebSocketMessage,
                ws_close: sdkWebSocketClose,
                shutdown: sdkShutdown,
                extra_route_prefixes: extraPrefixList(description.extraRoutePrefixes),
                cancel_request: sdkCancelRequest,
                studio_directory: type.studio.map { UnsafePointer(strdup($0.directory)) },
                studio_pages: PluginExtrasBridge.pageList(type.studio?.pages ?? []),
                cli_commands: PluginExtrasBridge.commandList(type.commands),
                cli_run: type.commands.isEmpty ? nil : sdkCLIRun,
                health: type.healthCheck == nil ? nil : sdkHealth,
                streaming_route_prefixes: extraPrefixList(description.streamingRoutePrefixes)))
        // The entry runs once per dlopen before any other call; a racing second call keeps the first.
        let kept = state.withLock { state -> HostPointer<UnsafeMutablePointer<mb_plugin_descriptor>> in
            if let existing = state.descriptor { return existing }
            state.pluginType = type
            state.descriptor = HostPointer(pointer)
            return HostPointer(pointer)
        }
        return UnsafeRawPointer(kept.pointer)
    }

    /// An immortal NULL-terminated C array of `prefixes`, or NULL when there are none.
    private static func extraPrefixList(_ prefixes: [String]) -> UnsafePointer<UnsafePointer<CChar>?>? {
        guard !prefixes.isEmpty else { return nil }
        let list = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: prefixes.count + 1)
        for (index, prefix) in prefixes.enumerated() { (list + index).initialize(to: UnsafePointer(strdup(prefix))) }
        (list + prefixes.count).initialize(to: nil)
        return UnsafePointer(list)
    }

    /// Exports a JSON service `name` v`major` (call from `start`). Other plugins reach it
    /// with ``PluginHostServices/callService(_:major:method:json:portal:)`` for portals
    /// where this plugin is enabled; `handler` receives this plugin's instance for that portal.
    public static func exportJSONService(_ name: String, major: UInt32, handler: @escaping JSONServiceHandler) throws {
        guard let host else { throw PluginError.invalid("exportJSONService must be called from start(host:config:)") }
        let index = state.withLock { state -> Int? in
            guard state.jsonServices.count < jsonServiceCalls.count else { return nil }
            state.jsonServices.append((name, major, handler))
            return state.jsonServices.count - 1
        }
        guard let index else {
            throw PluginError.unsupported("a Swift plugin may export at most \(jsonServiceCalls.count) JSON services")
        }
        let table = UnsafeMutablePointer<mb_json_service>.allocate(capacity: 1)
        table.initialize(to: mb_json_service(struct_size: MemoryLayout<mb_json_service>.size, call: jsonServiceCalls[index]))
        let error = HostErrorBuffer()
        let status = name.withCChars {
            host.api.pointee.service_export(host.plugin, $0, $1, major, UnsafeRawPointer(table), MemoryLayout<mb_json_service>.size, error.buffer)
        }
        if status != MB_OK { throw PluginError.refused(error.text) }
    }
}

/// Per-instance state behind `mb_plugin_instance *`.
final class InstanceBox: Sendable {
    let plugin: any PortalPlugin
    let portal: Portal
    /// A connection's messages waiting for `webSocketReceived`, and whether a task is handing
    /// them over. An idle connection holds no task: one starts when a message arrives and
    /// ends when the queue is empty (tens of thousands of idle sockets cost no task each).
    private struct SocketQueue {
        var pending: [WebSocketMessage] = []
        var head = 0
        var draining = false
        /// The connection closed: what is queued is still handed over, then the entry goes.
        var closed = false
        var count: Int { pending.count - head }
    }
    private let sockets = Mutex<[UInt64: SocketQueue]>([:])
    /// Messages a connection may have waiting for `webSocketReceived`: a client that sends
    /// faster than the plugin handles would otherwise grow the process without limit. Past it
    /// the connection is closed with 1008.
    static let maxPendingMessages = 1_024

    /// Tasks of requests in progress, by token, so the host can cancel one (`cancel_request`),
    /// and the tokens whose task finished before it was tracked.
    private let requests = Mutex<(running: [UInt64: Task<Void, Never>], finishedEarly: Set<UInt64>)>(([:], []))

    init(plugin: any PortalPlugin, portal: Portal) {
        self.plugin = plugin
        self.portal = portal
    }

    /// Remembers the task handling `token` (unless it already finished).
    func track(_ token: UInt64, _ task: Task<Void, Never>) {
        requests.withLock { if $0.finishedEarly.remove(token) == nil { $0.running[token] = task } }
    }

    /// Forgets a finished request.
    func untrack(_ token: UInt64) {
        requests.withLock { if $0.running.removeValue(forKey: token) == nil { $0.finishedEarly.insert(token) } }
    }

    /// Cancels the task handling `token`: the plugin's awaits see `Task.isCancelled` and its
    /// Postgres queries are cancelled on the server.
    func cancel(_ token: UInt64) {
        requests.withLock { $0.running.removeValue(forKey: token) }?.cancel()
    }

    static func from(_ pointer: OpaquePointer?) -> InstanceBox? {
        guard let pointer else { return nil }
        return Unmanaged<InstanceBox>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }

    /// Registers a connection (its messages are handed over in order, one at a time).
    func openSocket(_ id: UInt64) {
        sockets.withLock { $0[id] = SocketQueue() }
    }

    func deliver(_ id: UInt64, _ message: WebSocketMessage) {
        enum Outcome { case gone, overflow, queued, start }
        let outcome = sockets.withLock { sockets -> Outcome in
            guard var queue = sockets[id], !queue.closed else { return .gone }
            if queue.count >= Self.maxPendingMessages { return .overflow }
            queue.pending.append(message)
            let start = !queue.draining
            queue.draining = true
            sockets[id] = queue
            return start ? .start : .queued
        }
        switch outcome {
        case .gone, .queued: return
        case .overflow:
            WebSocketConnection(id: id).close(
                code: 1008, reason: "too many messages waiting: the server handles at most \(Self.maxPendingMessages) queued messages per connection")
        case .start:
            let plugin = self.plugin
            Task {
                let socket = WebSocketConnection(id: id)
                while let next = self.nextMessage(id) {
                    await plugin.webSocketReceived(next, on: socket)
                }
            }
        }
    }

    /// The connection's next waiting message; nil (and the drain ends) when none is left.
    private func nextMessage(_ id: UInt64) -> WebSocketMessage? {
        sockets.withLock { sockets in
            guard var queue = sockets[id] else { return nil }
            guard queue.count > 0 else {
                if queue.closed {
                    sockets.removeValue(forKey: id)
                    return nil
                }
                queue.draining = false
                queue.pending.removeAll()
                queue.head = 0
                sockets[id] = queue
                return nil
            }
            let message = queue.pending[queue.head]
            queue.head += 1
            if queue.head > 64 && queue.head * 2 > queue.pending.count {
                queue.pending.removeFirst(queue.head)
                queue.head = 0
            }
            sockets[id] = queue
            return message
        }
    }

    func closeSocket(_ id: UInt64, code: UInt16) {
        sockets.withLock { sockets in
            if sockets[id]?.draining == true {
                sockets[id]?.closed = true
            } else {
                sockets.removeValue(forKey: id)
            }
        }
        let plugin = self.plugin
        Task { await plugin.webSocketClosed(WebSocketConnection(id: id), code: code) }
    }
}

private func parseConfig(_ bytes: mb_host_bytes) throws -> PluginConfig {
    try PluginConfig(json: copyBytes(bytes))
}

private func sdkInit(_ api: UnsafePointer<mb_host_api>?, _ plugin: OpaquePointer?, _ config: mb_host_bytes, _ error: mb_host_error_buffer) -> mb_status {
    guard let api, let type = PluginExport.pluginType else {
        write("host table is NULL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    if let problem = PluginHostServices.refusal(of: api) {
        write(problem, into: error)
        return MB_ERR_UNSUPPORTED
    }
    let host = PluginHostServices(api: api, plugin: plugin)
    PluginExport.state.withLock { state in
        state.host = host
        state.jsonServices = []
    }
    do {
        try type.start(host: host, config: try parseConfig(config))
        return MB_OK
    } catch let failure {
        write("\(failure)", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
}

private func sdkInstanceCreate(_ context: UnsafePointer<mb_host_instance_context>?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: mb_host_error_buffer) -> mb_status {
    guard let context, let out, let type = PluginExport.pluginType else {
        write("instance context is NULL", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
    let portal = Portal(name: copyString(context.pointee.portal_name), handle: context.pointee.portal)
    do {
        let plugin = try type.init(portal: portal, config: try parseConfig(context.pointee.config_json))
        out.pointee = OpaquePointer(Unmanaged.passRetained(InstanceBox(plugin: plugin, portal: portal)).toOpaque())
        return MB_OK
    } catch let failure {
        write("\(failure)", into: error)
        return MB_ERR_INVALID_ARGUMENT
    }
}

private func sdkInstanceDestroy(_ instance: OpaquePointer?) {
    guard let instance else { return }
    let box = Unmanaged<InstanceBox>.fromOpaque(UnsafeRawPointer(instance)).takeRetainedValue()
    box.plugin.stop()
}

private func copyRequest(_ request: UnsafePointer<mb_host_request>) -> PluginRequest {
    let value = request.pointee
    var headers: [(name: String, value: String)] = []
    if let pointer = value.headers {
        headers.reserveCapacity(value.header_count)
        for index in 0..<value.header_count { headers.append((copyString(pointer[index].name), copyString(pointer[index].value))) }
    }
    return PluginRequest(
        method: copyString(value.method), path: copyString(value.path), query: copyString(value.query), headers: headers,
        body: copyBytes(value.body), portal: copyString(value.portal_name), requestID: copyString(value.request_id),
        remoteAddress: copyString(value.remote_address), clientCertificateSubject: copyString(value.client_certificate_subject),
        routePrefix: copyString(value.route_prefix), credential: PluginCredential.parsed(json: copyBytes(value.credential_json)))
}

private func sdkHandleRequest(_ instance: OpaquePointer?, _ token: mb_request_token, _ request: UnsafePointer<mb_host_request>?) {
    guard let box = InstanceBox.from(instance), let request, let host = PluginExport.host else { return }
    var copied = copyRequest(request)
    if streamedBody(request) {
        if let whole = wholeBody(request) {
            copied.body = whole
        } else {
            copied.bodyStream = RequestBodyStream(host: host, token: token)
        }
    }
    let task = Task { [copied] in
        defer { box.untrack(token) }
        let response = await box.plugin.handle(copied)
        if let produce = response.streamedBody {
            await StreamedResponseWriter.run(host: host, token: token, status: response.status, headers: response.headers, produce: produce)
            return
        }
        let names = response.headers.map { Array($0.name.utf8) }
        let values = response.headers.map { Array($0.value.utf8) }
        withPluginHeaders(names, values) { headers, count in
            withPluginBytes(response.body) { body in
                _ = host.api.pointee.respond(token, UInt16(clamping: response.status), headers, count, body)
            }
        }
    }
    box.track(token, task)
}

/// Whether the request's body is streamed (ABI 1.7 `body_streamed`).
private func streamedBody(_ request: UnsafePointer<mb_host_request>) -> Bool {
    covers(request, \.body_streamed, MemoryLayout<Int32>.size) && request.pointee.body_streamed != 0
}

/// A streamed body the kernel already read whole (ABI 1.9 `whole_body`), nil when it is to be read.
private func wholeBody(_ request: UnsafePointer<mb_host_request>) -> [UInt8]? {
    guard covers(request, \.whole_body, MemoryLayout<mb_host_bytes>.size), request.pointee.whole_body.data != nil else { return nil }
    return copyBytes(request.pointee.whole_body)
}

/// Whether the kernel's request (its `struct_size`) has `field` of `size` bytes.
private func covers(_ request: UnsafePointer<mb_host_request>, _ field: PartialKeyPath<mb_host_request>, _ size: Int) -> Bool {
    guard let offset = MemoryLayout<mb_host_request>.offset(of: field) else { return false }
    return offset + size <= request.pointee.struct_size
}

private func sdkCancelRequest(_ instance: OpaquePointer?, _ token: mb_request_token) {
    InstanceBox.from(instance)?.cancel(token)
}

private func sdkWebSocketOpen(_ instance: OpaquePointer?, _ connection: mb_connection_id, _ request: UnsafePointer<mb_host_request>?, _ error: mb_host_error_buffer) -> mb_status {
    guard let box = InstanceBox.from(instance), let request else { return MB_ERR_INVALID_ARGUMENT }
    do {
        try box.plugin.webSocketOpened(WebSocketConnection(id: connection), request: copyRequest(request))
        box.openSocket(connection)
        return MB_OK
    } catch let failure {
        write("\(failure)", into: error)
        return MB_ERR_REFUSED
    }
}

private func sdkWebSocketMessage(_ instance: OpaquePointer?, _ connection: mb_connection_id, _ isText: Int32, _ payload: mb_host_bytes) {
    guard let box = InstanceBox.from(instance) else { return }
    box.deliver(connection, isText != 0 ? .text(copyString(payload)) : .binary(copyBytes(payload)))
}

private func sdkWebSocketClose(_ instance: OpaquePointer?, _ connection: mb_connection_id, _ code: UInt16) {
    InstanceBox.from(instance)?.closeSocket(connection, code: code)
}

private func sdkShutdown() {
    PluginExport.pluginType?.shutdown()
}

/// One C entry point per exported JSON service (C function pointers cannot capture).
private let jsonServiceCalls: [JSONServiceCall] = [
    { sdkJSONServiceCall(0, $0, $1, $2, $3, $4) }, { sdkJSONServiceCall(1, $0, $1, $2, $3, $4) },
    { sdkJSONServiceCall(2, $0, $1, $2, $3, $4) }, { sdkJSONServiceCall(3, $0, $1, $2, $3, $4) },
]

typealias JSONServiceCall = @convention(c) (OpaquePointer?, mb_host_bytes, mb_host_bytes, mb_service_reply?, UnsafeMutableRawPointer?) -> mb_status

private func sdkJSONServiceCall(
    _ index: Int, _ instance: OpaquePointer?, _ method: mb_host_bytes, _ json: mb_host_bytes, _ reply: mb_service_reply?, _ context: UnsafeMutableRawPointer?
) -> mb_status {
    let services = PluginExport.jsonServices
    guard let box = InstanceBox.from(instance), let reply, index < services.count else { return MB_ERR_INVALID_ARGUMENT }
    let handler = services[index].handler
    let methodName = copyString(method)
    let argument = copyBytes(json)
    let contextAddress = UInt(bitPattern: context)
    Task {
        let context = UnsafeMutableRawPointer(bitPattern: contextAddress)
        do {
            let result = try await handler(box.plugin, methodName, argument)
            withPluginBytes(result) { reply(context, MB_OK, $0) }
        } catch {
            let status: mb_status
            switch error as? PluginError {
            case .refused?: status = MB_ERR_REFUSED
            case .notFound?: status = MB_ERR_NOT_FOUND
            case .unavailable?: status = MB_ERR_UNAVAILABLE
            case .unsupported?: status = MB_ERR_UNSUPPORTED
            default: status = MB_ERR_INVALID_ARGUMENT
            }
            withPluginBytes(Array("\(error)".utf8)) { reply(context, status, $0) }
        }
    }
    return MB_OK
}

/// An open WebSocket connection; send and close from any task.
public struct WebSocketConnection: Sendable, Hashable {
    /// The kernel's connection id.
    public let id: UInt64

    /// The connection with the kernel's id `id` (as a plugin kept it).
    public init(id: UInt64) { self.id = id }

    /// Sends a text message; false when the connection is gone.
    @discardableResult
    public func send(_ text: String) -> Bool { send(Array(text.utf8), isText: true) }

    /// Sends a binary message; false when the connection is gone.
    @discardableResult
    public func send(binary: [UInt8]) -> Bool { send(binary, isText: false) }

    /// Sends a text message given as UTF-8 bytes; false when the connection is gone.
    @discardableResult
    public func send(textBytes bytes: [UInt8]) -> Bool { send(bytes, isText: true) }

    /// Sends one frame to many connections in one host call (`ws_broadcast`); unknown
    /// connections are skipped. Returns the number of connections it was queued for.
    @discardableResult
    public static func broadcast(_ bytes: [UInt8], isText: Bool, to connections: [UInt64]) -> Int {
        guard let host = PluginExport.host, !connections.isEmpty else { return 0 }
        return connections.withUnsafeBufferPointer { ids in
            withPluginBytes(bytes) { host.api.pointee.ws_broadcast(ids.baseAddress, ids.count, isText ? 1 : 0, $0) }
        }
    }

    /// Closes the connection with `code` (1000: normal).
    public func close(code: UInt16 = 1000, reason: String = "") {
        guard let host = PluginExport.host else { return }
        withPluginBytes(Array(reason.utf8)) { _ = host.api.pointee.ws_close(id, code, $0) }
    }

    private func send(_ bytes: [UInt8], isText: Bool) -> Bool {
        guard let host = PluginExport.host else { return false }
        return withPluginBytes(bytes) { host.api.pointee.ws_send(id, isText ? 1 : 0, $0) } == MB_OK
    }
}
