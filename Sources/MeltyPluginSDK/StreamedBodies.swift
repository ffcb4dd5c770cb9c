import Foundation
import MeltyABIBytes
import MeltyPluginABI

/// The body of a request on a streaming prefix (ABI 1.7), read chunk by chunk as the client
/// sends it. Each read asks the kernel for the next chunk, so a plugin that reads slowly
/// slows the client down instead of buffering its body.
public struct RequestBodyStream: AsyncSequence, Sendable {
    /// One chunk of the body.
    public typealias Element = [UInt8]

    let host: PluginHostServices
    let token: UInt64

    /// Reads the chunks; the last read returns nil at the end of the body.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let host: PluginHostServices
        let token: UInt64
        var finished = false

        /// The next chunk, nil at the end; throws ``PluginError`` when the body is larger than
        /// the kernel's limit (`.invalid`) or the client went away (`.unavailable`).
        public mutating func next() async throws -> [UInt8]? {
            guard !finished else { return nil }
            let chunk = try await host.readBodyChunk(token)
            if chunk.isEmpty {
                finished = true
                return nil
            }
            return chunk
        }
    }

    /// An iterator over the chunks (iterate once).
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(host: host, token: token) }

    /// The whole body, refusing more than `limit` bytes with ``PluginError/invalid(_:)``.
    public func collect(upTo limit: Int) async throws -> [UInt8] {
        var body: [UInt8] = []
        for try await chunk in self {
            guard body.count + chunk.count <= limit else { throw PluginError.invalid("request body is larger than \(limit) bytes") }
            body.append(contentsOf: chunk)
        }
        return body
    }
}

/// Writes a streamed response body (``PluginResponse/streaming(status:headers:_:)``).
public struct ResponseBodyWriter: Sendable {
    let sink: @Sendable ([UInt8]) async throws -> Void

    /// Sends `chunk` and returns once the kernel handed it to the client's connection (the
    /// backpressure); throws ``PluginError/unavailable(_:)`` when the client went away.
    public func write(_ chunk: [UInt8]) async throws {
        guard !chunk.isEmpty else { return }
        try await sink(chunk)
    }

    /// Sends `text` as UTF-8.
    public func write(_ text: String) async throws { try await write(Array(text.utf8)) }
}

extension PluginHostServices {
    /// `request_body_read`: the next chunk of a streamed body, empty at its end.
    func readBodyChunk(_ token: UInt64) async throws -> [UInt8] {
        let read = try function(\.request_body_read, "request_body_read", since: 7)
        return try await withCheckedThrowingContinuation { continuation in
            let box = Unmanaged.passRetained(ServiceContinuation(continuation)).toOpaque()
            if read(token, sdkBodyChunkCompletion, box) != MB_OK {
                Unmanaged<ServiceContinuation>.fromOpaque(box).release()
                continuation.resume(throwing: PluginError.unavailable("the request body cannot be read"))
            }
        }
    }
}

/// Completion of `request_body_read`: the chunk, or the kernel's reason as a ``PluginError``.
private func sdkBodyChunkCompletion(_ context: UnsafeMutableRawPointer?, _ status: mb_status, _ chunk: mb_host_bytes) {
    guard let context else { return }
    let box = Unmanaged<ServiceContinuation>.fromOpaque(context).takeRetainedValue()
    switch status {
    case MB_OK: box.continuation.resume(returning: copyBytes(chunk))
    case MB_ERR_INVALID_ARGUMENT: box.continuation.resume(throwing: PluginError.invalid(copyString(chunk)))
    default: box.continuation.resume(throwing: PluginError.unavailable(copyString(chunk)))
    }
}

/// Runs a streamed answer: `respond_start`, the producer's chunks through `respond_write`
/// (each awaited), `respond_end`. On a host without ABI 1.7, or for a token the kernel does
/// not stream, the chunks are gathered and sent with `respond`.
enum StreamedResponseWriter {
    static func run(
        host: PluginHostServices, token: UInt64, status: Int, headers: [(name: String, value: String)],
        produce: @Sendable (ResponseBodyWriter) async throws -> Void
    ) async {
        let names = headers.map { Array($0.name.utf8) }
        let values = headers.map { Array($0.value.utf8) }
        let started: Bool
        if let start = try? host.function(\.respond_start, "respond_start", since: 7) {
            started = withPluginHeaders(names, values) { pointer, count in start(token, UInt16(clamping: status), pointer, count) } == MB_OK
        } else {
            started = false
        }
        guard started, let write = try? host.function(\.respond_write, "respond_write", since: 7),
            let end = try? host.function(\.respond_end, "respond_end", since: 7)
        else {
            let gathered = GatheredBody()
            let failed = (try? await produce(ResponseBodyWriter { gathered.append($0) })) == nil
            let body = failed ? Array("the response could not be produced".utf8) : gathered.bytes
            withPluginHeaders(names, values) { pointer, count in
                withPluginBytes(body) { _ = host.api.pointee.respond(token, UInt16(clamping: failed ? 500 : status), pointer, count, $0) }
            }
            return
        }
        let writer = ResponseBodyWriter { chunk in
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let box = Unmanaged.passRetained(StatusContinuation(continuation)).toOpaque()
                if withPluginBytes(chunk, { write(token, $0, sdkStatusCompletion, box) }) != MB_OK {
                    Unmanaged<StatusContinuation>.fromOpaque(box).release()
                    continuation.resume(throwing: PluginError.unavailable("the response has ended"))
                }
            }
        }
        do {
            try await produce(writer)
            _ = end(token, 0)
        } catch {
            _ = end(token, 1)
        }
    }
}

/// Chunks gathered for a host that cannot stream.
private final class GatheredBody: @unchecked Sendable {  // Sendable: appended by one producer task at a time, read after it returns.
    var bytes: [UInt8] = []
    func append(_ chunk: [UInt8]) { bytes.append(contentsOf: chunk) }
}
