import MeltyPluginABI

/// A C address shared between threads: the kernel's immortal host table and handles, or the
/// plugin's own immortal descriptor. The header's thread rules cover the C side.
struct HostPointer<Pointer>: @unchecked Sendable {  // Sendable: immortal C memory, read-only from Swift.
    let pointer: Pointer
    init(_ pointer: Pointer) { self.pointer = pointer }
}

/// A buffer the SDK hands to host calls that report errors.
final class SDKErrorBuffer {
    private let pointer: UnsafeMutablePointer<CChar>

    init() {
        pointer = .allocate(capacity: 1024)
        pointer.initialize(repeating: 0, count: 1024)
    }

    deinit { pointer.deallocate() }

    var buffer: mb_host_error_buffer { mb_host_error_buffer(data: pointer, capacity: 1024) }

    var text: String {
        pointer[1023] = 0
        return String(cString: pointer)
    }
}

/// Copies host bytes into a String (UTF-8, invalid sequences repaired).
func copyString(_ bytes: mb_host_bytes) -> String {
    guard let data = bytes.data, bytes.len > 0 else { return "" }
    return String(decoding: UnsafeBufferPointer(start: data, count: bytes.len), as: UTF8.self)
}

/// Copies host bytes.
func copyBytes(_ bytes: mb_host_bytes) -> [UInt8] {
    guard let data = bytes.data, bytes.len > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: bytes.len))
}

/// Writes `message` into a host error buffer (truncated, NUL-terminated).
func writeError(_ message: String, into buffer: mb_host_error_buffer) {
    guard let data = buffer.data, buffer.capacity > 0 else { return }
    let bytes = Array(message.utf8.prefix(buffer.capacity - 1))
    for (index, byte) in bytes.enumerated() { data[index] = CChar(bitPattern: byte) }
    data[bytes.count] = 0
}

/// Calls `body` with plugin-owned bytes valid for the call.
func withPluginBytes<R>(_ bytes: [UInt8], _ body: (mb_plugin_bytes) -> R) -> R {
    bytes.withUnsafeBufferPointer { body(mb_plugin_bytes(data: $0.baseAddress, len: $0.count)) }
}

/// Calls `body` with plugin-owned headers valid for the call.
func withPluginHeaders<R>(_ names: [[UInt8]], _ values: [[UInt8]], _ body: (UnsafePointer<mb_plugin_header>?, Int) -> R) -> R {
    let joined = zip(names, values).flatMap { $0 + $1 }
    return joined.withUnsafeBufferPointer { storage in
        var headers: [mb_plugin_header] = []
        var offset = 0
        for (name, value) in zip(names, values) {
            let base = storage.baseAddress
            headers.append(mb_plugin_header(
                name: mb_plugin_bytes(data: base.map { $0 + offset }, len: name.count),
                value: mb_plugin_bytes(data: base.map { $0 + offset + name.count }, len: value.count)))
            offset += name.count + value.count
        }
        return headers.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
    }
}

extension String {
    /// Calls `body` with the UTF-8 bytes as `const char *` and length.
    func withCChars<R>(_ body: (UnsafePointer<CChar>?, Int) -> R) -> R {
        var copy = self
        return copy.withUTF8 { bytes in bytes.withMemoryRebound(to: CChar.self) { body($0.baseAddress, $0.count) } }
    }
}
