/// A C address the kernel shares between threads.
///
/// Two kinds only: immortal host memory written once before it is shared (the host table,
/// C strings handed to plugins), and plugin memory the kernel reads only as the header
/// allows (descriptors) or passes back to the plugin untouched (instances, service tables).
/// The header states the thread rules for the plugin's side.
struct SharedPointer<Pointer>: @unchecked Sendable {  // Sendable: see the two kinds above; Swift cannot check C ownership.
    /// The address.
    let pointer: Pointer

    init(_ pointer: Pointer) { self.pointer = pointer }
}
