import NIOConcurrencyHelpers

/// Kernel state served by the pulse; `is_initialized` is cached (setup flips it once).
public final class SystemState: Sendable {
    /// The semantic version of this build.
    public static let version = "0.1.0"
    private let initialized: NIOLockedValueBox<Bool>
    private let cachedJSON: NIOLockedValueBox<[UInt8]>

    /// State with the given initialisation flag.
    public init(isInitialized: Bool) {
        initialized = NIOLockedValueBox(isInitialized)
        cachedJSON = NIOLockedValueBox(Self.render(isInitialized))
    }

    /// Whether setup has completed.
    public var isInitialized: Bool {
        get { initialized.withLockedValue { $0 } }
        set {
            initialized.withLockedValue { $0 = newValue }
            cachedJSON.withLockedValue { $0 = Self.render(newValue) }
        }
    }

    /// `{"is_initialized": ..., "version": ..., "pulse": "active"}`, pre-rendered.
    var statusJSON: [UInt8] { cachedJSON.withLockedValue { $0 } }

    private static func render(_ initialized: Bool) -> [UInt8] {
        Array("{\"is_initialized\":\(initialized),\"version\":\"\(version)\",\"pulse\":\"active\"}".utf8)
    }
}
