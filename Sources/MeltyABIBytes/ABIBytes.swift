import MeltyPluginABI

// The conversions between the C ABI's byte views and Swift, shared by the kernel (which
// hands `mb_host_*` memory to plugins) and the Swift plugin SDK (which hands `mb_plugin_*`
// memory to the kernel). One copy, so both sides bound, repair and terminate the same way.

/// A host-owned error buffer handed to a call across the boundary; read `text` after it returns.
public final class HostErrorBuffer {
    /// Bytes of every error buffer either side hands out, terminating NUL included.
    public static let capacity = 1024
    private let storage: UnsafeMutablePointer<CChar>

    /// A zeroed buffer of ``capacity`` bytes.
    public init() {
        storage = .allocate(capacity: Self.capacity)
        storage.initialize(repeating: 0, count: Self.capacity)
    }

    deinit { storage.deallocate() }

    /// The C view passed to the other side.
    public var buffer: mb_host_error_buffer { mb_host_error_buffer(data: storage, capacity: Self.capacity) }

    /// The message written into it (empty when none), always bounded by the capacity.
    public var text: String {
        storage[Self.capacity - 1] = 0
        return String(cString: storage)
    }
}

/// Writes `message` into an error buffer the other side handed over (truncated to its
/// capacity, NUL-terminated; nothing for a NULL or empty buffer).
public func write(_ message: String, into buffer: mb_host_error_buffer) {
    guard let data = buffer.data, buffer.capacity > 0 else { return }
    let bytes = Array(message.utf8.prefix(buffer.capacity - 1))
    bytes.withUnsafeBufferPointer { source in
        if let base = source.baseAddress { UnsafeMutableRawPointer(data).copyMemory(from: base, byteCount: bytes.count) }
    }
    data[bytes.count] = 0
}

/// Copies host bytes into a String (UTF-8, invalid sequences repaired; "" for NULL).
public func copyString(_ bytes: mb_host_bytes) -> String { String(pluginBytes: bytes.data, count: bytes.len) }

/// Copies plugin bytes into a String (UTF-8, invalid sequences repaired; "" for NULL).
public func copyString(_ bytes: mb_plugin_bytes) -> String { String(pluginBytes: bytes.data, count: bytes.len) }

/// Copies host bytes ([] for NULL).
public func copyBytes(_ bytes: mb_host_bytes) -> [UInt8] { copyBytes(bytes.data, bytes.len) }

/// Copies plugin bytes ([] for NULL).
public func copyBytes(_ bytes: mb_plugin_bytes) -> [UInt8] { copyBytes(bytes.data, bytes.len) }

private func copyBytes(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
    guard let data, count > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: count))
}

/// Calls `body` with plugin-owned bytes valid for the call.
public func withPluginBytes<R>(_ bytes: [UInt8], _ body: (mb_plugin_bytes) -> R) -> R {
    bytes.withUnsafeBufferPointer { body(mb_plugin_bytes(data: $0.baseAddress, len: $0.count)) }
}

/// Calls `body` with plugin-owned headers (pairs of `names` and `values`) valid for the call.
public func withPluginHeaders<R>(_ names: [[UInt8]], _ values: [[UInt8]], _ body: (UnsafePointer<mb_plugin_header>?, Int) -> R) -> R {
    let joined = zip(names, values).flatMap { $0 + $1 }
    return joined.withUnsafeBufferPointer { storage in
        var headers: [mb_plugin_header] = []
        var offset = 0
        for (name, value) in zip(names, values) {
            let base = storage.baseAddress
            headers.append(
                mb_plugin_header(
                    name: mb_plugin_bytes(data: base.map { $0 + offset }, len: name.count),
                    value: mb_plugin_bytes(data: base.map { $0 + offset + name.count }, len: value.count)))
            offset += name.count + value.count
        }
        return headers.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
    }
}

extension String {
    /// Calls `body` with a host-owned view of the UTF-8 bytes, valid during the call only.
    public func withHostBytes<R>(_ body: (mb_host_bytes) -> R) -> R {
        var copy = self
        return copy.withUTF8 { body(mb_host_bytes(data: $0.baseAddress, len: $0.count)) }
    }

    /// Calls `body` with the UTF-8 bytes as `const char *` and length, valid during the call only.
    public func withCChars<R>(_ body: (UnsafePointer<CChar>?, Int) -> R) -> R {
        var copy = self
        return copy.withUTF8 { bytes in bytes.withMemoryRebound(to: CChar.self) { body($0.baseAddress, $0.count) } }
    }

    /// Decodes `count` bytes at `data` as UTF-8 (invalid sequences repaired), or "" for NULL.
    public init(pluginBytes data: UnsafePointer<UInt8>?, count: Int) {
        guard let data, count > 0 else {
            self = ""
            return
        }
        self = String(decoding: UnsafeBufferPointer(start: data, count: count), as: UTF8.self)
    }

    /// Decodes a C string pointer with explicit length, or "" for NULL.
    public init(pluginChars data: UnsafePointer<CChar>?, count: Int) {
        guard let data, count > 0 else {
            self = ""
            return
        }
        self = data.withMemoryRebound(to: UInt8.self, capacity: count) { String(pluginBytes: $0, count: count) }
    }
}

extension Array where Element == UInt8 {
    /// Calls `body` with a host-owned view of the bytes, valid during the call only.
    public func withHostBytes<R>(_ body: (mb_host_bytes) -> R) -> R {
        withUnsafeBufferPointer { body(mb_host_bytes(data: $0.baseAddress, len: $0.count)) }
    }
}
