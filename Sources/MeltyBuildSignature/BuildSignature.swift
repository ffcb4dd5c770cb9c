/// The build signature shared by the kernel and Swift plugins.
///
/// Swift's ABI is stable only on Apple platforms, so the kernel and every Swift plugin
/// must be built by the same toolchain. Both sides compute this string at compile time
/// and the loader refuses a plugin whose signature differs.
public enum BuildSignature {
    /// `swift-<major.minor>;ptr<bits>` of the compiler that built this module.
    public static let swift: String = "swift-\(compilerVersion);ptr\(MemoryLayout<Int>.size * 8)"

    /// Prefix used by plugins written in C, which only need the pointer size to match.
    public static let c: String = "c;ptr\(MemoryLayout<Int>.size * 8)"

    private static var compilerVersion: String {
        #if compiler(>=6.5)
            return "6.5+"
        #elseif compiler(>=6.4)
            return "6.4"
        #elseif compiler(>=6.3)
            return "6.3"
        #elseif compiler(>=6.2)
            return "6.2"
        #else
            return "6.1"
        #endif
    }
}
