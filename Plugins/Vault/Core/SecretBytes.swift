import CSodium
import Foundation

/// Bytes that hold key material or a plaintext secret: heap memory this type owns and
/// wipes with `sodium_memzero` when it is released. Keys are also locked into RAM
/// (`sodium_mlock`) so they are never swapped out.
///
/// Not `Sendable` by accident: share it only after it is fully written.
public final class SecretBytes: @unchecked Sendable {  // @unchecked: owns a raw heap buffer, written before it is shared and only read afterwards.
    private let pointer: UnsafeMutableRawPointer
    /// Number of bytes.
    public let count: Int
    private let locked: Bool

    /// `count` zero bytes; `lockedInMemory` for keys that live long.
    public init(count: Int, lockedInMemory: Bool = false) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 16)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
        locked = lockedInMemory && count > 0 && sodium_mlock(pointer, count) == 0
    }

    /// A copy of `bytes`. The caller wipes its own copy (``SecretBytes/wipe(_:)``).
    public convenience init<Bytes: Collection>(copying bytes: Bytes, lockedInMemory: Bool = false) where Bytes.Element == UInt8 {
        self.init(count: bytes.count, lockedInMemory: lockedInMemory)
        let destination = pointer.assumingMemoryBound(to: UInt8.self)
        for (index, byte) in bytes.enumerated() { destination[index] = byte }
    }

    /// `count` random bytes (libsodium's `randombytes_buf`).
    public static func random(count: Int, lockedInMemory: Bool = true) -> SecretBytes {
        VaultCrypto.ensureInitialized()
        let bytes = SecretBytes(count: count, lockedInMemory: lockedInMemory)
        randombytes_buf(bytes.pointer, count)
        return bytes
    }

    deinit {
        if locked {
            sodium_munlock(pointer, count)  // zeroes before unlocking
        } else {
            sodium_memzero(pointer, max(count, 1))
        }
        pointer.deallocate()
    }

    /// Read access for the duration of `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Write access for the duration of `body`.
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(start: pointer, count: count))
    }

    /// Constant-time comparison (`sodium_memcmp`).
    public func constantTimeEquals(_ other: SecretBytes) -> Bool {
        count == other.count && sodium_memcmp(pointer, other.pointer, count) == 0
    }

    /// The bytes as UTF-8 text, or `nil` when they are not valid UTF-8. The `String` is a
    /// copy this type cannot wipe: use it only where a string is unavoidable (JSON out).
    public func utf8String() -> String? {
        withUnsafeBytes { String(validating: $0.bindMemory(to: UInt8.self), as: UTF8.self) }
    }

    /// Zeroes a plaintext buffer the caller owns.
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { sodium_memzero(base, buffer.count) }
        }
    }
}
