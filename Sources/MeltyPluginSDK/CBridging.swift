import MeltyABIBytes
import MeltyPluginABI

/// A C address shared between threads: the kernel's immortal host table and handles, or the
/// plugin's own immortal descriptor. The header's thread rules cover the C side.
struct HostPointer<Pointer>: @unchecked Sendable {  // Sendable: immortal C memory, read-only from Swift.
    let pointer: Pointer
    init(_ pointer: Pointer) { self.pointer = pointer }
}
