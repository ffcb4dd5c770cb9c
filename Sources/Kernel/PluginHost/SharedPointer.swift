/// A C address the kernel shares between threads.
///
/// Three kinds only: immortal host memory written once before it is shared (the host table,
/// C strings handed to plugins); plugin memory the kernel reads only as the header allows
/// (descriptors) or passes back to the plugin untouched (instances, service tables), whose
/// thread rules the header states; and C objects used by one thread at a time, handed over
/// under a lock (idle hiredis connections).
struct SharedPointer<Pointer>: @unchecked Sendable {  // Sendable: one of the three kinds above; Swift cannot check C ownership.
    /// The address.
    let pointer: Pointer

    init(_ pointer: Pointer) { self.pointer = pointer }
}
