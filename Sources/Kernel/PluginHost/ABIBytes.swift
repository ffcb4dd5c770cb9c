import MeltyPluginABI

/// A host-owned error buffer handed to a plugin call; read `text` after it returns.
final class ErrorBuffer {
    private let storage: UnsafeMutablePointer<CChar>
    private let capacity = 1024

    init() {
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: 0, count: capacity)
    }

    deinit { storage.deallocate() }

    /// The C view passed to the plugin.
    var buffer: mb_host_error_buffer { mb_host_error_buffer(data: storage, capacity: capacity) }

    /// The message the plugin wrote (empty when none), always bounded by the capacity.
    var text: String {
        storage[capacity - 1] = 0
        return String(cString: storage)
    }
}

/// Writes `message` into a plugin-provided host error buffer (truncated, NUL-terminated).
func write(_ message: String, into buffer: mb_host_error_buffer) {
    guard let data = buffer.data, buffer.capacity > 0 else { return }
    let bytes = Array(message.utf8.prefix(buffer.capacity - 1))
    bytes.withUnsafeBufferPointer { source in
        UnsafeMutableRawPointer(data).copyMemory(from: source.baseAddress!, byteCount: bytes.count)
    }
    data[bytes.count] = 0
}

extension String {
    /// Calls `body` with a host-owned view of the UTF-8 bytes, valid during the call only.
    func withHostBytes<R>(_ body: (mb_host_bytes) -> R) -> R {
        var copy = self
        return copy.withUTF8 { body(mb_host_bytes(data: $0.baseAddress, len: $0.count)) }
    }

    /// Decodes `len` bytes at `data` as UTF-8 (invalid sequences repaired), or "" for NULL.
    init(pluginBytes data: UnsafePointer<UInt8>?, count: Int) {
        guard let data, count > 0 else { self = ""; return }
        self = String(decoding: UnsafeBufferPointer(start: data, count: count), as: UTF8.self)
    }

    /// Decodes a C string pointer with explicit length, or "" for NULL.
    init(pluginChars data: UnsafePointer<CChar>?, count: Int) {
        guard let data, count > 0 else { self = ""; return }
        self = data.withMemoryRebound(to: UInt8.self, capacity: count) { String(pluginBytes: $0, count: count) }
    }
}

extension mb_host_bytes {
    /// A copy of bytes a plugin passed into a host function.
    var copiedBytes: [UInt8] {
        guard let data, len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: len))
    }
}

extension Array where Element == UInt8 {
    /// Calls `body` with a host-owned view of the bytes, valid during the call only.
    func withHostBytes<R>(_ body: (mb_host_bytes) -> R) -> R {
        withUnsafeBufferPointer { body(mb_host_bytes(data: $0.baseAddress, len: $0.count)) }
    }
}

extension mb_plugin_bytes {
    /// A copy of the plugin's bytes.
    var copiedBytes: [UInt8] {
        guard let data, len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: len))
    }
}
