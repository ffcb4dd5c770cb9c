import Foundation

/// One stored version of a function.
public struct FunctionVersion: Sendable, Equatable {
    /// The portal it belongs to.
    public var portal: String
    /// The function's name.
    public var name: FunctionName
    /// The version number (1, 2, … per function).
    public var version: Int
    /// SHA-256 (hex) of the bundle's ``FunctionBundle/canonicalListing``.
    public var sha256: String
    /// The manifest it was deployed with (entrypoint resolved).
    public var manifest: FunctionManifest
    /// The files' bytes together.
    public var size: Int
    /// When it was deployed.
    public var createdAt: Date
    /// Who deployed it.
    public var createdBy: String
    /// Whether it is the function's active version.
    public var active: Bool
}

/// A function and its active version.
public struct FunctionRecord: Sendable, Equatable {
    /// The portal it belongs to.
    public var portal: String
    /// The function's name.
    public var name: FunctionName
    /// The version requests run.
    public var activeVersion: Int
    /// The active version's manifest (`verify_jwt`, `allow_net`, …).
    public var manifest: FunctionManifest
    /// The active version's SHA-256.
    public var sha256: String
    /// When the function was first deployed.
    public var createdAt: Date
    /// When it was last deployed or rolled back.
    public var updatedAt: Date
}

/// One line a function logged.
public struct FunctionLogLine: Sendable, Equatable {
    /// The longest message stored, in bytes (longer ones are cut at a character boundary).
    public static let maxMessageBytes = 8192

    /// The store's id (ascending in insertion order); 0 before it is stored.
    public var id: Int64
    /// The portal.
    public var portal: String
    /// The function's name.
    public var name: FunctionName
    /// The version that logged it.
    public var version: Int
    /// The request it belongs to ("" outside a request).
    public var requestID: String
    /// `debug`, `info`, `warn`, `error` or `log`.
    public var level: String
    /// The text.
    public var message: String
    /// When it was logged.
    public var at: Date

    /// A line to append.
    public init(id: Int64 = 0, portal: String, name: FunctionName, version: Int, requestID: String, level: String, message: String, at: Date) {
        self.id = id
        self.portal = portal
        self.name = name
        self.version = version
        self.requestID = requestID
        self.level = level
        self.message = message
        self.at = at
    }
}
